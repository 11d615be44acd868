package claim_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

func TestLookupField(t *testing.T) {
	t.Parallel()
	cases := map[string]claim.Field{
		"Provider NPI":        claim.FieldProviderNPI,
		"provider_npi":        claim.FieldProviderNPI,
		"providerNpi":         claim.FieldProviderNPI,
		"PROVIDER-NPI":        claim.FieldProviderNPI,
		"Plan/Group #":        claim.FieldPlanGroup,
		"plan_group":          claim.FieldPlanGroup,
		"Subscriber#":         claim.FieldSubscriber,
		"service date":        claim.FieldServiceDate,
		"submitted procedure": claim.FieldSubmittedProcedure,
		"quadrant":            claim.FieldQuadrant,
		"provider fees":       claim.FieldProviderFees,
		"Allowed fees":        claim.FieldAllowedFees,
		"member coinsurance":  claim.FieldMemberCoinsurance,
		"memberCopay":         claim.FieldMemberCopay,
		" member_copay ":      claim.FieldMemberCopay,
	}
	for name, want := range cases {
		got, ok := claim.LookupField(name)
		require.True(t, ok, "name %q", name)
		require.Equal(t, want, got, "name %q", name)
	}
	for _, name := range []string{"", "npi", "provider", "subscriber_id", "fees", "lines"} {
		_, ok := claim.LookupField(name)
		require.False(t, ok, "name %q", name)
	}
}

func TestParseServiceDate(t *testing.T) {
	t.Parallel()
	day := time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC)
	for _, in := range []string{"3/28/18 0:00", "3/28/18 13:45", "03/28/18 00:00", "3/28/18", "3/28/2018", "2018-03-28", "2018-03-28T10:00:00Z", "2018-03-28T23:30:00-05:00"} {
		got, err := claim.ParseServiceDate(in)
		require.NoError(t, err, "input %q", in)
		require.Equal(t, day, got, "input %q", in)
	}
	for _, in := range []string{"", "yesterday", "28/3/18", "2018-02-30", "13/1/18 0:00", "2018-03-28 10:00", "3-28-18"} {
		_, err := claim.ParseServiceDate(in)
		require.Error(t, err, "input %q", in)
	}
}

func TestNetFee(t *testing.T) {
	t.Parallel()
	cases := []struct {
		provider, allowed, coins, copay, want claim.Cents
	}{
		{15000, 1000, 1000, 2000, 17000},
		{95000, 9500, 5000, 5000, 95500},
		{10000, 10000, 0, 0, 0},
		{1000, 5000, 0, 100, -3900},
	}
	for _, tc := range cases {
		l := claim.Line{ProviderFees: tc.provider, AllowedFees: tc.allowed, MemberCoinsurance: tc.coins, MemberCopay: tc.copay}
		require.Equal(t, tc.want, l.NetFee())
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	good := claim.Line{SubmittedProcedure: "D0180", ProviderNPI: "1234567893"}
	cases := []struct {
		rule claim.Rule
		line claim.Line
		pass bool
	}{
		{claim.ProcedureCode, good, true},
		{claim.ProcedureCode, claim.Line{SubmittedProcedure: "X0180"}, false},
		{claim.ProcedureCode, claim.Line{SubmittedProcedure: "0180"}, false},
		{claim.NPIFormat, good, true},
		{claim.NPIFormat, claim.Line{ProviderNPI: "123456789"}, false},
		{claim.NPIFormat, claim.Line{ProviderNPI: "12345678901"}, false},
		{claim.NPIFormat, claim.Line{ProviderNPI: "12345678a3"}, false},
		{claim.NPIChecksum, good, true},                                   // the CMS example NPI
		{claim.NPIChecksum, claim.Line{ProviderNPI: "1245319599"}, true},  // a real-world valid NPI
		{claim.NPIChecksum, claim.Line{ProviderNPI: "1234567890"}, false}, // wrong check digit
		{claim.NPIChecksum, claim.Line{ProviderNPI: "1497775535"}, false}, // the sample's NPIs fail
		{claim.NPIChecksum, claim.Line{ProviderNPI: "1497775538"}, false},
		{claim.NPIChecksum, claim.Line{ProviderNPI: "123456789"}, false},
	}
	for _, tc := range cases {
		field, detail, ok := tc.rule.Check(tc.line)
		require.Equal(t, tc.pass, ok, "rule %s on %+v", tc.rule.Name, tc.line)
		if !ok {
			require.NotEmpty(t, field)
			require.NotEmpty(t, detail)
		}
	}
	require.Equal(t, []string{"procedure_code", "npi_format", "service_date_range"}, claim.DefaultRules().Names())
}

func TestServiceDateRange(t *testing.T) {
	t.Parallel()
	date := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		require.NoError(t, err)
		return d
	}
	// 23:30 in New York on 2026-12-06 is already 2026-12-07 in UTC.
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	now := func() time.Time { return time.Date(2026, 12, 6, 23, 30, 0, 0, ny) }
	rule := claim.ServiceDateRange(date("1900-01-01"), 24*time.Hour, now)
	narrow := claim.ServiceDateRange(date("2020-01-01"), 0, now)
	for _, tc := range []struct {
		rule claim.Rule
		date string
		pass bool
	}{
		{rule, "1899-12-31", false},
		{rule, "1900-01-01", true},
		{rule, "2018-03-28", true},
		{rule, "2026-12-08", true}, // one day after today (UTC)
		{rule, "2026-12-09", false},
		{rule, "9999-12-31", false},
		{rule, "0001-01-01", false},
		{narrow, "2019-12-31", false},
		{narrow, "2020-01-01", true},
		{narrow, "2026-12-07", true},
		{narrow, "2026-12-08", false},
	} {
		field, detail, ok := tc.rule.Check(claim.Line{ServiceDate: date(tc.date)})
		require.Equal(t, tc.pass, ok, tc.date)
		require.Equal(t, claim.FieldServiceDate, field)
		if !tc.pass {
			require.Contains(t, detail, "must be from ")
		}
	}
	_, detail, _ := narrow.Check(claim.Line{})
	require.Equal(t, "must be from 2020-01-01 to 2026-12-07", detail)
}

func readSample() ([]byte, error) {
	return os.ReadFile("testdata/claim_1234.csv") // a copy of shared/data/claim_1234.csv
}

func mustReadSample(t *testing.T) []byte {
	t.Helper()
	b, err := readSample()
	require.NoError(t, err)
	return b
}

func TestDecodeCSVSample(t *testing.T) {
	t.Parallel()
	in, err := claim.DecodeCSV(strings.NewReader(string(mustReadSample(t))))
	require.NoError(t, err)
	lines, err := claim.Parse(in, claim.DefaultRules())
	require.NoError(t, err)
	require.Len(t, lines, 4)

	var fees []string
	for _, l := range lines {
		fees = append(fees, l.NetFee().String())
	}
	require.Equal(t, []string{"170.00", "445.00", "750.00", "955.00"}, fees)
	require.Equal(t, "2320.00", claim.Claim{Lines: lines}.NetFee().String())

	first := lines[0]
	require.Equal(t, time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC), first.ServiceDate)
	require.Equal(t, "D0180", first.SubmittedProcedure)
	require.Equal(t, "", first.Quadrant)
	require.Equal(t, "GRP-1000", first.PlanGroup)
	require.Equal(t, "3730189502", first.Subscriber)
	require.Equal(t, "1497775535", first.ProviderNPI)
	require.Equal(t, claim.Cents(15000), first.ProviderFees)
	require.Equal(t, claim.Cents(1000), first.AllowedFees)
	require.Equal(t, claim.Cents(1000), first.MemberCoinsurance)
	require.Equal(t, claim.Cents(2000), first.MemberCopay)
	require.Equal(t, "UR", lines[3].Quadrant)
	require.Equal(t, "1497775538", lines[3].ProviderNPI)

	// With the checksum rule switched on the sample's NPIs are refused.
	_, err = claim.Parse(in, append(claim.DefaultRules(), claim.NPIChecksum))
	var problems claim.Problems
	require.ErrorAs(t, err, &problems)
	require.Len(t, problems, 4)
	for i, p := range problems {
		require.Equal(t, claim.Problem{Line: i, Field: "provider_npi", Rule: "npi_checksum", Detail: p.Detail}, p)
	}
}

func TestDecodeCSVMalformed(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"empty":          "",
		"short row":      "service date,quadrant\n3/28/18,UR,extra\n",
		"bare quote":     "service date,quadrant\n3/28/18,U\"R\n",
		"unclosed quote": "service date,quadrant\n\"3/28/18,UR\n",
	} {
		_, err := claim.DecodeCSV(strings.NewReader(body))
		require.ErrorIs(t, err, claim.ErrMalformed, name)
	}
}

const oldServicePayload = `{"service_date": "2025-01-15", "submitted_procedure": "D0180",
  "quadrant": null, "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi":
  "1497775530", "provider_fees": 100.0, "allowed_fees": 100.0, "member_coinsurance": 0.0,
  "member_copay": 0.0}`

func TestDecodeJSONForms(t *testing.T) {
	t.Parallel()
	line := `{"Service Date": "3/28/18 0:00", "submittedProcedure": "d4211", "Quadrant": "ur",
	  "Plan/Group #": "GRP-1000", "Subscriber#": "3730189502", "Provider NPI": "1497775538",
	  "provider fees": "$950.00 ", "allowedFees": 95, "member_coinsurance": 50.0, "MEMBER_COPAY": "50"}`
	for name, body := range map[string]string{
		"envelope":    `{"lines": [` + line + `]}`,
		"array":       `[` + line + `]`,
		"flat object": line,
	} {
		in, err := claim.DecodeJSON(strings.NewReader(body))
		require.NoError(t, err, name)
		lines, err := claim.Parse(in, claim.DefaultRules())
		require.NoError(t, err, name)
		require.Len(t, lines, 1, name)
		require.Equal(t, claim.Line{
			ServiceDate:        time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC),
			SubmittedProcedure: "D4211", Quadrant: "UR", PlanGroup: "GRP-1000",
			Subscriber: "3730189502", ProviderNPI: "1497775538",
			ProviderFees: 95000, AllowedFees: 9500, MemberCoinsurance: 5000, MemberCopay: 5000,
		}, lines[0], name)
		require.Equal(t, claim.Cents(95500), lines[0].NetFee())
	}

	in, err := claim.DecodeJSON(strings.NewReader(oldServicePayload))
	require.NoError(t, err)
	lines, err := claim.Parse(in, claim.DefaultRules())
	require.NoError(t, err)
	require.Equal(t, "", lines[0].Quadrant)
	require.Equal(t, claim.Cents(0), lines[0].NetFee())
}

func TestDecodeJSONMalformed(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"", "  ", "{", `{"lines": }`, `"a string"`, `42`, `null`, `{"lines": 5}`, `{"lines": [1, 2]}`, `[[]]`, `{"a":1}{"b":2}`} {
		_, err := claim.DecodeJSON(strings.NewReader(body))
		require.ErrorIs(t, err, claim.ErrMalformed, "body %q", body)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	body := `{"lines": [
	  {"service_date": "someday", "submitted_procedure": "X1", "plan_group": "G", "subscriber": "S",
	   "provider_npi": "123", "provider_fees": "-5", "allowed_fees": 1e2, "member_coinsurance": "1.234",
	   "member_copay": true, "colour": "red"},
	  {"service_date": "2018-03-28", "submitted_procedure": "X1", "plan_group": "G", "subscriber": "S",
	   "provider_npi": "123", "provider_fees": 1, "allowed_fees": 1, "member_coinsurance": 0, "member_copay": 0},
	  {}
	], "note": "x"}`
	in, err := claim.DecodeJSON(strings.NewReader(body))
	require.NoError(t, err)
	_, err = claim.Parse(in, claim.DefaultRules())
	var problems claim.Problems
	require.ErrorAs(t, err, &problems)

	type key struct {
		line        int
		field, rule string
	}
	var got []key
	for _, p := range problems {
		require.NotEmpty(t, p.Detail)
		got = append(got, key{p.Line, p.Field, p.Rule})
	}
	require.Equal(t, []key{
		{-1, "note", "unknown_field"},
		{0, "service_date", "date"},
		{0, "submitted_procedure", "procedure_code"},
		{0, "provider_npi", "npi_format"},
		{0, "provider_fees", "money"},
		{0, "allowed_fees", "money"},
		{0, "member_coinsurance", "money"},
		{0, "member_copay", "value_type"},
		{0, "colour", "unknown_field"},
		{1, "submitted_procedure", "procedure_code"},
		{1, "provider_npi", "npi_format"},
		{2, "service_date", "required"},
		{2, "submitted_procedure", "required"},
		{2, "plan_group", "required"},
		{2, "subscriber", "required"},
		{2, "provider_npi", "required"},
		{2, "provider_fees", "required"},
		{2, "allowed_fees", "required"},
		{2, "member_coinsurance", "required"},
		{2, "member_copay", "required"},
	}, got)
	require.Contains(t, problems[8].Detail, "provider_npi", "an unknown field lists the accepted names")
}

func TestParseLineCount(t *testing.T) {
	t.Parallel()
	_, err := claim.Parse(claim.Input{}, claim.DefaultRules())
	require.ErrorContains(t, err, "at least one line")
	_, err = claim.Parse(claim.Input{Lines: make([]claim.RawLine, claim.MaxLines+1)}, claim.DefaultRules())
	require.ErrorContains(t, err, "at most 1000 lines")
}

func TestSubscriberNeverInProblems(t *testing.T) {
	t.Parallel()
	body := `{"service_date": "x", "submitted_procedure": "Q", "plan_group": "G", "subscriber": "3730189502",
	  "provider_npi": "1", "provider_fees": "x", "allowed_fees": "y", "member_coinsurance": "z", "member_copay": "w"}`
	in, err := claim.DecodeJSON(strings.NewReader(body))
	require.NoError(t, err)
	_, err = claim.Parse(in, claim.DefaultRules())
	require.Error(t, err)
	require.NotContains(t, err.Error(), "3730189502")
}

// Two spellings of one field are refused rather than one silently dropped.
func TestParseRefusesAFieldGivenTwice(t *testing.T) {
	t.Parallel()
	body := strings.Replace(oldServicePayload, `"provider_npi":`, `"Provider NPI": "1497775531", "provider_npi":`, 1)
	in, err := claim.DecodeJSON(strings.NewReader(body))
	require.NoError(t, err)
	_, err = claim.Parse(in, claim.DefaultRules())
	var problems claim.Problems
	require.ErrorAs(t, err, &problems)
	require.Len(t, problems, 1)
	require.Equal(t, "duplicate_field", problems[0].Rule)
	require.Equal(t, "provider_npi", problems[0].Field)

	csv := "Provider NPI,provider_npi\n1497775531,1497775532\n"
	in, err = claim.DecodeCSV(strings.NewReader(csv))
	require.NoError(t, err)
	_, err = claim.Parse(in, claim.DefaultRules())
	require.ErrorContains(t, err, "already has")
}

func TestParseRefusesHiddenData(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		body        string
		field, rule string
	}{
		"a JSON key given twice": {strings.Replace(oldServicePayload, `"provider_fees": 100.0`, `"provider_fees": 100.0, "provider_fees": 900.0`, 1), "provider_fees", "duplicate_field"},
		"NUL in text":            {strings.Replace(oldServicePayload, `"GRP-1000"`, `"GRP\u00001000"`, 1), "plan_group", "text"},
		"invalid UTF-8":          {strings.Replace(oldServicePayload, `"GRP-1000"`, "\"GRP\xff1000\"", 1), "plan_group", "text"},
	}
	for name, tc := range cases {
		in, err := claim.DecodeJSON(strings.NewReader(tc.body))
		if err != nil {
			require.ErrorIs(t, err, claim.ErrMalformed, name)
			continue
		}
		_, err = claim.Parse(in, claim.DefaultRules())
		var problems claim.Problems
		require.ErrorAs(t, err, &problems, name)
		require.Equal(t, tc.field, problems[0].Field, name)
		require.Equal(t, tc.rule, problems[0].Rule, name)
	}
}

// A CSV without its header row would turn data (a subscriber number among
// it) into field names; it is refused without repeating any of it.
func TestDecodeCSVWithoutHeader(t *testing.T) {
	t.Parallel()
	sample := string(mustReadSample(t))
	_, rows, _ := strings.Cut(sample, "\n")
	_, err := claim.DecodeCSV(strings.NewReader(rows))
	require.ErrorIs(t, err, claim.ErrMalformed)
	require.NotContains(t, err.Error(), "3730189502")
	require.Contains(t, err.Error(), "header")
}

// The fingerprint's text must stay what it was when it was written with fmt:
// the hashes of stored claims depend on it.
func TestFingerprintText(t *testing.T) {
	legacy := func(c claim.Claim) []byte {
		h := sha256.New()
		fmt.Fprintf(h, "%q\n", c.ExternalID)
		for _, l := range c.Lines {
			fmt.Fprintf(h, "%s|%q|%q|%q|%q|%q|%d|%d|%d|%d\n", l.ServiceDate.Format(time.DateOnly),
				l.SubmittedProcedure, l.Quadrant, l.PlanGroup, l.Subscriber, l.ProviderNPI,
				l.ProviderFees, l.AllowedFees, l.MemberCoinsurance, l.MemberCopay)
		}
		return h.Sum(nil)
	}
	line := claim.Line{ServiceDate: time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC), SubmittedProcedure: "D0180",
		Quadrant: "UR", PlanGroup: "GRP-1000 \"x\"\t|é", Subscriber: "3730189502", ProviderNPI: "1497775530",
		ProviderFees: 15000, AllowedFees: 1000, MemberCoinsurance: 0, MemberCopay: 999999999999}
	for _, c := range []claim.Claim{
		{},
		{ExternalID: "PAY-1", Lines: []claim.Line{line}},
		{ExternalID: "\x00\u2028☃", Lines: []claim.Line{line, {}, line}},
	} {
		require.Equal(t, legacy(c), c.Fingerprint())
	}
}
