package claim

import (
	"bytes"
	"encoding/json"
)

// A small scanner over JSON that encoding/json has already validated: it
// reads an object's members in input order (duplicates kept) and an array's
// items, without building any values. encoding/json's Decoder does the same
// with a token per call and several copies, a large part of the cost of
// storing a claim. Every function here assumes valid JSON.

// scanObject returns the members of the valid JSON object b, in order.
func scanObject(b []byte) []member { return scanObjectInto(make([]member, 0, 16), b) }

// scanObjectInto is scanObject appending to members, so that a caller
// scanning many objects (a claim's lines) reuses one slice.
func scanObjectInto(members []member, b []byte) []member {
	i := skipSpace(b, 1) // past '{'
	for b[i] != '}' {
		nameEnd := stringEnd(b, i)
		name := unquote(b[i:nameEnd])
		i = skipSpace(b, skipSpace(b, nameEnd)+1) // past ':'
		end := valueEnd(b, i)
		members = append(members, member{name: name, raw: b[i:end]})
		i = skipSpace(b, end)
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return members
}

// scanArray returns the items of the valid JSON array b, in order.
func scanArray(b []byte) [][]byte {
	var items [][]byte
	i := skipSpace(b, 1) // past '['
	for b[i] != ']' {
		end := valueEnd(b, i)
		items = append(items, b[i:end])
		i = skipSpace(b, end)
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return items
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string literal starting at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; ; j++ {
		switch b[j] {
		case '\\':
			j++ // the escaped character cannot end the string
		case '"':
			return j + 1
		}
	}
}

// valueEnd returns the index just past the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
	default: // number, true, false, null
		j := i
		for j < len(b) && !endsLiteral(b[j]) {
			j++
		}
		return j
	}
}

// unquote returns the text of a valid JSON string literal.
func unquote(lit []byte) string {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body) // valid JSON, valid UTF-8 (checked before), no escapes
	}
	var s string
	_ = json.Unmarshal(lit, &s) // valid: cannot fail
	return s
}

func endsLiteral(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}
