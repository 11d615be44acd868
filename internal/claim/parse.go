package claim

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxLines bounds the lines of one claim.
const MaxLines = 1000

// ValueKind tells how a raw value was written.
type ValueKind int

const (
	KindString ValueKind = iota // a JSON string or a CSV cell
	KindNumber                  // a JSON number, Text is its literal
	KindNull                    // JSON null
	KindOther                   // a JSON bool, object or array
)

// Value is one raw field value exactly as the sender wrote it.
type Value struct {
	Kind ValueKind
	Text string
	// NotUnicode marks a JSON string whose escapes named no character (a
	// lone surrogate); Text then holds U+FFFD in its place.
	NotUnicode bool
}

// RawField is one name/value pair of a raw line, the name as sent.
type RawField struct {
	Name  string
	Value Value
}

// RawLine is one line as decoded from JSON or CSV, before any interpretation.
type RawLine []RawField

// Input is a decoded but not yet interpreted claim.
type Input struct {
	// ExternalID is the sender's own identifier of the claim ("claim_id" or
	// "external_id"), nil when the claim has none.
	ExternalID *Value
	// Replaces names the claim this one corrects ("replaces": its id or its
	// claim_id), nil for a new claim.
	Replaces *Value
	// Unknown lists claim-level names that are not part of a claim.
	Unknown []string
	// Duplicates lists claim-level names given again ("lines" twice, or both
	// "claim_id" and "external_id").
	Duplicates []string
	Lines      []RawLine
}

// MaxExternalIDLength bounds the sender's claim identifier.
const MaxExternalIDLength = 255

// The longest text a line's fields may hold, in characters: room for any
// real code or identifier, and no room to store or echo bulk data.
const (
	MaxProcedureLength  = 16 // CDT codes are five characters ("D0180")
	MaxQuadrantLength   = 16
	MaxPlanGroupLength  = 64
	MaxSubscriberLength = 64
)

// maxTextLength is the limit of each text field; money, dates and NPIs have
// formats of their own.
var maxTextLength = map[Field]int{
	FieldSubmittedProcedure: MaxProcedureLength,
	FieldQuadrant:           MaxQuadrantLength,
	FieldPlanGroup:          MaxPlanGroupLength,
	FieldSubscriber:         MaxSubscriberLength,
}

// maxNameLength bounds an unknown field name repeated in a problem.
const maxNameLength = 64

// shortName is a name as sent, cut to maxNameLength characters for a problem.
func shortName(name string) string {
	if utf8.RuneCountInString(name) <= maxNameLength {
		return name
	}
	return string([]rune(name)[:maxNameLength]) + "…"
}

// StorableText tells whether s can be stored, or looked up, as text: UTF-8
// without NUL characters (Postgres refuses both).
func StorableText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// validText tells whether a value's text can be stored: UTF-8 without NUL
// characters (Postgres refuses both).
func validText(v Value) bool {
	return !v.NotUnicode && StorableText(v.Text)
}

// ExternalIDText is the sender's claim identifier, trimmed; "" when absent.
// Parse checks it.
func (in Input) ExternalIDText() string {
	if in.ExternalID == nil {
		return ""
	}
	return strings.TrimSpace(in.ExternalID.Text)
}

// ReplacesText is the claim this one replaces, trimmed; "" when none.
func (in Input) ReplacesText() string {
	if in.Replaces == nil {
		return ""
	}
	return strings.TrimSpace(in.Replaces.Text)
}

// isExternalIDName tells whether a claim-level name carries the sender's claim id.
func isExternalIDName(name string) bool {
	k := fieldKey(name)
	return k == "claimid" || k == "externalid"
}

// Parse turns raw lines into normalized Lines and checks them against the
// rules. It reports every problem it finds, as Problems, each mistake once.
func Parse(in Input, rules Rules) ([]Line, error) {
	var problems Problems
	if v := in.ExternalID; v != nil {
		text := in.ExternalIDText()
		switch {
		case v.Kind != KindString && v.Kind != KindNumber:
			problems = append(problems, Problem{Line: -1, Field: "claim_id", Rule: RuleValueType,
				Detail: "must be a string or a number"})
		case !validText(*v):
			problems = append(problems, Problem{Line: -1, Field: "claim_id", Rule: RuleText,
				Detail: "must be UTF-8 text without NUL characters"})
		case text == "" || len(text) > MaxExternalIDLength:
			problems = append(problems, Problem{Line: -1, Field: "claim_id", Rule: RuleExternalID,
				Detail: fmt.Sprintf("must be 1 to %d characters", MaxExternalIDLength)})
		}
	}
	if v := in.Replaces; v != nil {
		text := in.ReplacesText()
		switch {
		case v.Kind != KindString && v.Kind != KindNumber:
			problems = append(problems, Problem{Line: -1, Field: "replaces", Rule: RuleValueType,
				Detail: "must be a string: the id or claim_id of the claim this one corrects"})
		case !validText(*v):
			problems = append(problems, Problem{Line: -1, Field: "replaces", Rule: RuleText,
				Detail: "must be UTF-8 text without NUL characters"})
		case text == "" || len(text) > MaxExternalIDLength:
			problems = append(problems, Problem{Line: -1, Field: "replaces", Rule: RuleExternalID,
				Detail: fmt.Sprintf("must be 1 to %d characters", MaxExternalIDLength)})
		}
	}
	for _, name := range in.Duplicates {
		problems = append(problems, Problem{Line: -1, Field: shortName(name), Rule: RuleDuplicateField,
			Detail: "is given more than once (under one spelling or another)"})
	}
	for _, name := range in.Unknown {
		problems = append(problems, Problem{Line: -1, Field: shortName(name), Rule: RuleUnknownField,
			Detail: fmt.Sprintf("unknown field %q; a claim has \"lines\" and optionally \"claim_id\" and \"replaces\"", shortName(name))})
	}
	switch {
	case len(in.Lines) == 0:
		problems = append(problems, Problem{Line: -1, Field: "lines", Rule: RuleLineCount,
			Detail: "a claim needs at least one line"})
	case len(in.Lines) > MaxLines:
		return nil, append(problems, Problem{Line: -1, Field: "lines", Rule: RuleLineCount,
			Detail: fmt.Sprintf("a claim has at most %d lines", MaxLines)})
	}

	lines := make([]Line, 0, len(in.Lines))
	for i, raw := range in.Lines {
		line, lineProblems := parseLine(i, raw)
		// Rules see the fields that parsed; a field already reported is not
		// reported again by a rule that would only see it empty.
		parsed := len(lineProblems)
		for _, p := range rules.check(i, line) {
			if !slices.ContainsFunc(lineProblems[:parsed], func(q Problem) bool { return q.Field == p.Field }) {
				lineProblems = append(lineProblems, p)
			}
		}
		sortByField(lineProblems)
		problems = append(problems, lineProblems...)
		lines = append(lines, line)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return lines, nil
}

type fieldValue struct {
	field Field
	value Value
}

func parseLine(index int, raw RawLine) (Line, Problems) {
	var (
		line     Line
		problems Problems
		// A line has few fields: a slice beats a map, and one on the stack
		// (room for every field once) beats one on the heap.
		seenBuf [fieldCount]fieldValue
		seen    = seenBuf[:0]
	)
	lookup := func(f Field) (Value, bool) {
		for _, fv := range seen {
			if fv.field == f {
				return fv.value, true
			}
		}
		return Value{}, false
	}
	report := func(field Field, rule, detail string) {
		problems = append(problems, Problem{Line: index, Field: string(field), Rule: rule, Detail: detail})
	}
	for _, rf := range raw {
		f, ok := LookupField(rf.Name)
		if !ok {
			problems = append(problems, Problem{Line: index, Field: shortName(rf.Name), Rule: RuleUnknownField,
				Detail: fmt.Sprintf("unknown field %q; accepted fields: %s", shortName(rf.Name), strings.Join(FieldNames(), ", "))})
			continue
		}
		if _, dup := lookup(f); dup {
			problems = append(problems, Problem{Line: index, Field: string(f), Rule: RuleDuplicateField,
				Detail: fmt.Sprintf("%q names %s, which this line already has", rf.Name, f)})
			continue
		}
		seen = append(seen, fieldValue{f, rf.Value})
	}

	// text returns the trimmed text of a field, reporting it when a required
	// field is missing or a value has the wrong JSON type.
	text := func(f Field) (string, bool) {
		v, ok := lookup(f)
		if !ok || v.Kind == KindNull || (v.Kind != KindOther && strings.TrimSpace(v.Text) == "") {
			if f != FieldQuadrant {
				report(f, RuleRequired, "is required")
			}
			return "", false
		}
		if v.Kind == KindOther {
			report(f, RuleValueType, "must be a string or a number")
			return "", false
		}
		if !validText(v) {
			report(f, RuleText, "must be UTF-8 text without NUL characters")
			return "", false
		}
		s := strings.TrimSpace(v.Text)
		if limit, ok := maxTextLength[f]; ok && utf8.RuneCountInString(s) > limit {
			report(f, RuleLength, fmt.Sprintf("must be at most %d characters", limit))
			return "", false
		}
		return s, true
	}
	money := func(f Field, dst *Cents) {
		s, ok := text(f)
		if !ok {
			return
		}
		c, err := ParseCents(s)
		if err != nil {
			report(f, RuleMoney, err.Error())
			return
		}
		*dst = c
	}

	if s, ok := text(FieldServiceDate); ok {
		d, err := ParseServiceDate(s)
		if err != nil {
			report(FieldServiceDate, RuleDate, "is not a date (expected M/D/YY H:MM, YYYY-MM-DD or RFC 3339)")
		}
		line.ServiceDate = d
	}
	if s, ok := text(FieldSubmittedProcedure); ok {
		line.SubmittedProcedure = strings.ToUpper(s)
	}
	if s, ok := text(FieldQuadrant); ok {
		line.Quadrant = strings.ToUpper(s)
	}
	line.PlanGroup, _ = text(FieldPlanGroup)
	line.Subscriber, _ = text(FieldSubscriber)
	line.ProviderNPI, _ = text(FieldProviderNPI)
	money(FieldProviderFees, &line.ProviderFees)
	money(FieldAllowedFees, &line.AllowedFees)
	money(FieldMemberCoinsurance, &line.MemberCoinsurance)
	money(FieldMemberCopay, &line.MemberCopay)

	return line, problems
}

// sortByField orders a line's problems as the fields are ordered, whatever
// order the input had.
func sortByField(ps Problems) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return fieldOrder(a.Field) - fieldOrder(b.Field)
	})
}

func fieldOrder(name string) int {
	if i := slices.Index(Fields, Field(name)); i >= 0 {
		return i
	}
	return len(Fields)
}

var dateLayouts = []string{
	"2006-01-02",
	time.RFC3339Nano,
	"1/2/06 15:04",
	"1/2/06",
	"1/2/2006 15:04",
	"1/2/2006",
}

// ParseServiceDate reads a service date as the sample writes it ("3/28/18 0:00",
// M/D/YY H:MM), as an ISO date ("2018-03-28") or as an RFC 3339 timestamp.
// The result is the calendar date, at midnight UTC.
func ParseServiceDate(s string) (time.Time, error) {
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date (expected M/D/YY H:MM, YYYY-MM-DD or RFC 3339)", s)
}
