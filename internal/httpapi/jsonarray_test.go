package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func readItems(t *testing.T, input string, max int) ([]string, error) {
	t.Helper()
	a := newArrayReader(strings.NewReader(input), max)
	if err := a.open(); err != nil {
		return nil, err
	}
	var items []string
	for {
		item, err := a.next()
		if errors.Is(err, io.EOF) {
			return items, nil
		}
		if err != nil {
			return items, err
		}
		items = append(items, string(item))
	}
}

func TestArrayReader(t *testing.T) {
	items, err := readItems(t, ` [ {"a": "]}\"[{", "b": [1, {"c": []}]} ,[1,2],"x\\\"]",  -1.5e3 , true,null, {}] trailing`, 100)
	require.NoError(t, err)
	require.Equal(t, []string{`{"a": "]}\"[{", "b": [1, {"c": []}]}`, `[1,2]`, `"x\\\"]"`, `-1.5e3`, `true`, `null`, `{}`}, items)

	items, err = readItems(t, "[]", 100)
	require.NoError(t, err)
	require.Empty(t, items)

	for input, want := range map[string]string{
		`{}`:                    errNotArray.Error(),
		``:                      errNotArray.Error(),
		`[{} {}]`:               "expected ','",
		`[{"a": [`:              io.ErrUnexpectedEOF.Error(),
		`[{}, "abc`:             io.ErrUnexpectedEOF.Error(),
		`[1, 2`:                 io.ErrUnexpectedEOF.Error(),
		`[{"k": "long value"}]`: errItemTooLarge.Error(),
		`[{"x":[}, {}], {}]`:    "closes the item",
		`[[1}, {}]`:             "closes the item",
	} {
		_, err := readItems(t, input, 10)
		require.ErrorContains(t, err, want, input)
	}
}

// On valid JSON the reader finds exactly the items encoding/json finds.
func FuzzArrayReader(f *testing.F) {
	for _, seed := range []string{`[]`, `[{"lines": [{"a": "\\"}]}, [1], "s", 0]`, `[ {"x":"]"} , {"y":"\u005d"} ]`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var want []json.RawMessage
		if json.Unmarshal([]byte(input), &want) != nil {
			return
		}
		got, err := readItems(t, input, 1<<20)
		require.NoError(t, err)
		require.Len(t, got, len(want))
		for i := range want {
			require.Equal(t, string(bytes.TrimSpace(want[i])), got[i])
		}
	})
}
