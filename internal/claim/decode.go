package claim

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
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
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Input{}, malformed("empty body")
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
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return Input{}, malformed("%v", err)
		}
		var in Input
		linesKey, isEnvelope := "", false
		for k, raw := range obj {
			switch {
			case fieldKey(k) == "lines":
				linesKey, isEnvelope = k, true
			case isExternalIDName(k):
				v := jsonValue(raw)
				in.ExternalID = &v
				delete(obj, k)
			}
		}
		if !isEnvelope {
			line, err := decodeJSONLine(obj)
			in.Lines = []RawLine{line}
			return in, err
		}
		for k := range obj {
			if k != linesKey {
				in.Unknown = append(in.Unknown, k)
			}
		}
		sort.Strings(in.Unknown)
		lines, err := decodeJSONLines(obj[linesKey])
		in.Lines = lines
		return in, err
	default:
		return Input{}, malformed("a claim is a JSON object or array")
	}
}

func decodeJSONLines(data json.RawMessage) ([]RawLine, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil {
		return nil, malformed("\"lines\" must be an array of line objects")
	}
	lines := make([]RawLine, 0, len(items))
	for i, item := range items {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
			return nil, malformed("line %d is not a JSON object", i)
		}
		line, err := decodeJSONLine(obj)
		if err != nil {
			return nil, err
		}
		lines = append(lines, line)
	}
	return lines, nil
}

func decodeJSONLine(obj map[string]json.RawMessage) (RawLine, error) {
	line := make(RawLine, 0, len(obj))
	for name, raw := range obj {
		line = append(line, RawField{Name: name, Value: jsonValue(raw)})
	}
	sort.Slice(line, func(i, j int) bool { return line[i].Name < line[j].Name })
	return line, nil
}

// jsonValue classifies one already-validated JSON value by its first byte.
func jsonValue(raw json.RawMessage) Value {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return Value{Kind: KindNull}
	case raw[0] == '"':
		var s string
		_ = json.Unmarshal(raw, &s) // valid JSON string: cannot fail
		return Value{Kind: KindString, Text: s}
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
			// One more than allowed is enough for Parse to say so.
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
