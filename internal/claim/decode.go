package claim

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrMalformed marks input that is not well-formed JSON or CSV, or not shaped
// like a claim at all. Read errors of the underlying reader are passed through
// unchanged, so a caller can tell a body that was too large.
var ErrMalformed = errors.New("malformed claim")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// DecodeJSON reads a claim in any of its JSON forms: {"lines": [...]}, a bare
// array of lines, or a single flat line object (the old service's payload).
func DecodeJSON(r io.Reader) (Input, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return Input{}, err
	}
	return DecodeJSONBytes(body)
}

// DecodeJSONBytes is DecodeJSON of a body already read. The Input holds no
// reference to body.
func DecodeJSONBytes(body []byte) (Input, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Input{}, malformed("empty body")
	}
	if !utf8.Valid(body) {
		// encoding/json would quietly turn bad bytes into U+FFFD.
		return Input{}, malformed("the body is not valid UTF-8")
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return Input{}, malformed("invalid JSON: %v", err)
	}
	switch body[0] {
	case '[':
		lines, err := decodeJSONLines(body)
		return Input{Lines: lines}, err
	case '{':
		members := scanObject(body)
		var (
			in         Input
			lines      json.RawMessage
			isEnvelope bool
			rest       []member
		)
		for _, m := range members {
			switch {
			case fieldKey(m.name) == "lines" && isEnvelope:
				in.Duplicates = append(in.Duplicates, "lines")
			case isExternalIDName(m.name) && in.ExternalID != nil:
				in.Duplicates = append(in.Duplicates, "claim_id")
			case fieldKey(m.name) == "lines":
				lines, isEnvelope = m.raw, true
			case isExternalIDName(m.name):
				v := jsonValue(m.raw)
				in.ExternalID = &v
			case fieldKey(m.name) == "replaces" && in.Replaces != nil:
				in.Duplicates = append(in.Duplicates, "replaces")
			case fieldKey(m.name) == "replaces":
				v := jsonValue(m.raw)
				in.Replaces = &v
			default:
				rest = append(rest, m)
			}
		}
		if !isEnvelope {
			in.Lines = []RawLine{toRawLine(rest)}
			return in, nil
		}
		for _, m := range rest {
			in.Unknown = append(in.Unknown, m.name)
		}
		var err error
		in.Lines, err = decodeJSONLines(lines)
		return in, err
	default:
		return Input{}, malformed("a claim is a JSON object or array")
	}
}

func decodeJSONLines(data json.RawMessage) ([]RawLine, error) {
	if len(data) == 0 || data[0] != '[' {
		return nil, malformed("\"lines\" must be an array of line objects")
	}
	items := scanArray(data)
	lines := make([]RawLine, 0, len(items))
	members := make([]member, 0, 16) // each line's, copied into its RawLine
	for i, item := range items {
		if item[0] != '{' {
			return nil, malformed("line %d is not a JSON object", i)
		}
		members = scanObjectInto(members[:0], item)
		lines = append(lines, toRawLine(members))
	}
	return lines, nil
}

// member is one name/value pair of a JSON object, in input order.
type member struct {
	name string
	raw  json.RawMessage
}

func toRawLine(members []member) RawLine {
	line := make(RawLine, 0, len(members))
	for _, m := range members {
		line = append(line, RawField{Name: m.name, Value: jsonValue(m.raw)})
	}
	return line
}

// jsonValue classifies one already-validated JSON value by its first byte.
func jsonValue(raw json.RawMessage) Value {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return Value{Kind: KindNull}
	case raw[0] == '"':
		// encoding/json turns a lone surrogate escape ("\ud800") into U+FFFD,
		// changing the text without a word.
		return Value{Kind: KindString, Text: unquote(raw), NotUnicode: hasLoneSurrogate(raw)}
	case raw[0] == 'n':
		return Value{Kind: KindNull}
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return Value{Kind: KindNumber, Text: string(raw)}
	default:
		return Value{Kind: KindOther, Text: string(raw)}
	}
}

// DecodeCSV reads a claim laid out like the sample file: a header row naming
// the fields, then one row per line.
func DecodeCSV(r io.Reader) (Input, error) {
	br := bufio.NewReader(r)
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = false
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return Input{}, malformed("empty CSV: expected a header row")
	}
	if err != nil {
		return Input{}, csvError(err)
	}
	known := false
	for _, name := range header {
		_, ok := LookupField(name)
		known = known || ok
	}
	if !known {
		// Likely a data row: name none of it, it may hold a subscriber number.
		return Input{}, malformed("the first CSV row must be a header naming the fields (%s)",
			strings.Join(FieldNames(), ", "))
	}
	var in Input
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return in, nil
		}
		if err != nil {
			return Input{}, csvError(err)
		}
		if len(in.Lines) == MaxLines {
			// One more than allowed is enough for Parse to say so; the rest is
			// read to its end so a body over the size limit is still told so.
			if _, err := io.Copy(io.Discard, br); err != nil {
				return Input{}, err
			}
			in.Lines = append(in.Lines, nil)
			return in, nil
		}
		line := make(RawLine, len(header))
		for i, name := range header {
			line[i] = RawField{Name: name, Value: Value{Kind: KindString, Text: rec[i]}}
		}
		in.Lines = append(in.Lines, line)
	}
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return malformed("CSV row %d: %v", pe.StartLine, pe.Err)
	}
	return err
}

// hasLoneSurrogate reports whether a JSON string literal has a \uXXXX escape
// of a UTF-16 surrogate that is not half of a high-low pair.
func hasLoneSurrogate(lit []byte) bool {
	escape := func(i int) (rune, bool) { // the \uXXXX escape at lit[i:], if any
		if i+6 > len(lit) || lit[i] != '\\' || lit[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(lit[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		r, ok := escape(i)
		if !ok {
			i++ // a two-character escape such as \\ or \"
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			low, ok := escape(i + 6)
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}
