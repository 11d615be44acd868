package claim

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field names one attribute of a claim line, in its canonical snake_case form.
type Field string

// The fields of a claim line. Quadrant is the only optional one.
const (
	FieldServiceDate        Field = "service_date"
	FieldSubmittedProcedure Field = "submitted_procedure"
	FieldQuadrant           Field = "quadrant"
	FieldPlanGroup          Field = "plan_group"
	FieldSubscriber         Field = "subscriber"
	FieldProviderNPI        Field = "provider_npi"
	FieldProviderFees       Field = "provider_fees"
	FieldAllowedFees        Field = "allowed_fees"
	FieldMemberCoinsurance  Field = "member_coinsurance"
	FieldMemberCopay        Field = "member_copay"
)

// fieldCount is len(Fields), as a constant (a test holds them equal).
const fieldCount = 10

// Fields lists every field of a line in the order of the sample CSV.
var Fields = []Field{
	FieldServiceDate, FieldSubmittedProcedure, FieldQuadrant, FieldPlanGroup,
	FieldSubscriber, FieldProviderNPI, FieldProviderFees, FieldAllowedFees,
	FieldMemberCoinsurance, FieldMemberCopay,
}

var fieldsByKey = func() map[string]Field {
	m := make(map[string]Field, len(Fields))
	for _, f := range Fields {
		m[fieldKey(string(f))] = f
	}
	return m
}()

// LookupField finds the field a name stands for, ignoring case, spaces,
// underscores and punctuation: "Provider NPI", "provider_npi" and
// "providerNpi" are all FieldProviderNPI, "Plan/Group #" is FieldPlanGroup.
func LookupField(name string) (Field, bool) {
	var buf [32]byte
	if key, ok := asciiFieldKey(buf[:0], name); ok {
		f, ok := fieldsByKey[string(key)] // the lookup does not allocate
		return f, ok
	}
	f, ok := fieldsByKey[fieldKey(name)]
	return f, ok
}

// asciiFieldKey is fieldKey for the usual names, ASCII and short, without
// allocating; ok is false for any other name.
func asciiFieldKey(dst []byte, name string) ([]byte, bool) {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= utf8.RuneSelf || len(dst) == cap(dst):
			return nil, false
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			dst = append(dst, c)
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		}
	}
	return dst, true
}

// fieldKey keeps only the letters and digits of a name, lower-cased.
func fieldKey(name string) string {
	if key, ok := asciiFieldKey(make([]byte, 0, 32), name); ok {
		return string(key)
	}
	var b strings.Builder
	for _, r := range name {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// FieldNames returns the canonical names of all fields, for error messages.
func FieldNames() []string {
	out := make([]string, len(Fields))
	for i, f := range Fields {
		out[i] = string(f)
	}
	return out
}
