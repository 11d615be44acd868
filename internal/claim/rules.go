package claim

import (
	"fmt"
	"strings"
	"time"
)

// Rule is one named check of a parsed line. Check returns the field at fault
// and what is wrong, or ok when the line passes (the detail is then unused). New rules are added to the
// list given to Parse; nothing else needs to change.
type Rule struct {
	Name  string
	Check func(Line) (field Field, detail string, ok bool)
}

// Rules is the ordered list of rules a claim must pass.
type Rules []Rule

func (rs Rules) check(index int, l Line) Problems {
	var out Problems
	for _, r := range rs {
		if field, detail, ok := r.Check(l); !ok {
			out = append(out, Problem{Line: index, Field: string(field), Rule: r.Name, Detail: detail})
		}
	}
	return out
}

// Names lists the names of the rules, in order.
func (rs Rules) Names() []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// ProcedureCode: a submitted procedure is a CDT code, which begins with "D".
var ProcedureCode = Rule{
	Name: "procedure_code",
	Check: func(l Line) (Field, string, bool) {
		return FieldSubmittedProcedure, "must begin with \"D\" (a CDT code such as D0180)",
			strings.HasPrefix(l.SubmittedProcedure, "D")
	},
}

// NPIFormat: a provider NPI is exactly ten digits.
var NPIFormat = Rule{
	Name: "npi_format",
	Check: func(l Line) (Field, string, bool) {
		return FieldProviderNPI, "must be exactly 10 digits",
			ValidNPIFormat(l.ProviderNPI)
	},
}

// NPIChecksum: the tenth digit of an NPI is the Luhn check digit of the first
// nine, computed with the card-issuer prefix 80840 that CMS prescribes.
var NPIChecksum = Rule{
	Name: "npi_checksum",
	Check: func(l Line) (Field, string, bool) {
		return FieldProviderNPI, "fails the NPI check digit (Luhn with prefix 80840)",
			ValidNPIChecksum(l.ProviderNPI)
	},
}

// The service dates DefaultRules accepts: from DefaultEarliestServiceDate to
// DefaultServiceDateAhead after today (UTC). Claims arrive years late (the
// original sample is from 2018), never much ahead of the service.
var (
	DefaultEarliestServiceDate               = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	DefaultServiceDateAhead    time.Duration = 24 * time.Hour
)

// ServiceDateRange: a service date is plausible, from earliest to ahead
// after today (UTC, by now's clock), both included.
func ServiceDateRange(earliest time.Time, ahead time.Duration, now func() time.Time) Rule {
	earliest = dateOf(earliest)
	return Rule{
		Name: "service_date_range",
		Check: func(l Line) (Field, string, bool) {
			latest := dateOf(now().UTC().Add(ahead))
			if !l.ServiceDate.Before(earliest) && !l.ServiceDate.After(latest) {
				return FieldServiceDate, "", true // every line passes here: no text to format
			}
			return FieldServiceDate, fmt.Sprintf("must be from %s to %s",
				earliest.Format(time.DateOnly), latest.Format(time.DateOnly)), false
		},
	}
}

// dateOf is t's calendar date (in t's location), at midnight UTC.
func dateOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// DefaultRules are the rules every claim passes; NPIChecksum is left out
// because real-world test data (the sample claim among it) often fails it.
func DefaultRules() Rules {
	return DefaultRulesWithDates(DefaultEarliestServiceDate, DefaultServiceDateAhead)
}

// DefaultRulesWithDates are DefaultRules with service dates from earliest to
// ahead after today, as the operator configured them.
func DefaultRulesWithDates(earliest time.Time, ahead time.Duration) Rules {
	return Rules{ProcedureCode, NPIFormat, ServiceDateRange(earliest, ahead, time.Now)}
}

// ValidNPIChecksum reports whether npi is ten digits whose last is the Luhn
// check digit of "80840" followed by the first nine.
func ValidNPIChecksum(npi string) bool {
	if len(npi) != 10 || !allDigits(npi) {
		return false
	}
	digits := "80840" + npi
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
