package claim

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// referenceMembers reads an object's members in order with encoding/json's
// Decoder: slow, but obviously right. The scanner must agree with it.
func referenceMembers(t *testing.T, data []byte) []member {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		var raw json.RawMessage
		require.NoError(t, dec.Decode(&raw))
		members = append(members, member{name: tok.(string), raw: bytes.TrimSpace(raw)})
	}
	return members
}

func FuzzScanObject(f *testing.F) {
	for _, seed := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a" : "x\"y" , "a":[1,{"b":"]}"}],"c":null}`,
		`{"lines":[{"provider_npi":"1497775530","provider_fees":"$100.00"}],"claim_id":"c\u00e9-1"}`,
		"{\"\\ud83d\\ude00\":\t-1.5e3,\n\"k\\\\\":true,\"\":false}",
		`{"deep":[[[[{"x":[]}]]]],"s":"\\","n":0}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = bytes.TrimSpace(data)
		// DecodeJSON checks both before it scans.
		if !utf8.Valid(data) || !json.Valid(data) || len(data) == 0 || data[0] != '{' {
			return
		}
		got := scanObject(data)
		want := referenceMembers(t, data)
		require.Equal(t, len(want), len(got))
		for i := range want {
			require.Equal(t, want[i].name, got[i].name)
			require.Equal(t, string(want[i].raw), string(got[i].raw))
			if got[i].raw[0] == '[' {
				var ref []json.RawMessage
				require.NoError(t, json.Unmarshal(got[i].raw, &ref))
				items := scanArray(got[i].raw)
				require.Equal(t, len(ref), len(items))
				for j := range ref {
					require.Equal(t, string(bytes.TrimSpace(ref[j])), string(items[j]))
				}
			}
		}
	})
}

// parseLine keeps a line's fields in an array of fieldCount on its stack.
func TestFieldCountIsTheNumberOfFields(t *testing.T) {
	if fieldCount != len(Fields) {
		t.Fatalf("fieldCount is %d, Fields has %d", fieldCount, len(Fields))
	}
}
