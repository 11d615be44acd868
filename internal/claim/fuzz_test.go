package claim_test

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// fuzzOldServicePayload is the old FastAPI service's payload (the same text as
// the one in claim_test.go, kept here so the fuzz seeds stand on their own).
const fuzzOldServicePayload = `{"service_date": "2025-01-15", "submitted_procedure": "D0180",
  "quadrant": null, "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi":
  "1497775530", "provider_fees": 100.0, "allowed_fees": 100.0, "member_coinsurance": 0.0,
  "member_copay": 0.0}`

// fuzzLine is one line in every spelling of the field names the tests use.
const fuzzLine = `{"Service Date": "3/28/18 0:00", "submittedProcedure": "d4211", "Quadrant": "ur",
  "Plan/Group #": "GRP-1000", "Subscriber#": "3730189502", "Provider NPI": "1497775538",
  "provider fees": "$950.00 ", "allowedFees": 95, "member_coinsurance": 50.0, "MEMBER_COPAY": "50"}`

// decodeAndParseSeeds are the claim bodies of the existing tests and the
// sample, plus the hostile forms of the hostile-input tests. Inputs that
// expose a known defect are not seeds but regressions in
// testdata/fuzz/FuzzDecodeAndParse, so they fail until the defect is fixed.
func decodeAndParseSeeds(tb testing.TB) []struct {
	body  string
	isCSV bool
} {
	tb.Helper()
	sample, err := os.ReadFile("testdata/claim_1234.csv")
	require.NoError(tb, err)
	type seed = struct {
		body  string
		isCSV bool
	}
	seeds := []seed{
		{string(sample), true},
		{strings.ReplaceAll(string(sample), "\n", "\r\n"), true},
		{"\xef\xbb\xbf" + string(sample), true},
		{strings.Replace(strings.Replace(string(sample), "D4346", "4346", 1), "$450.00 ", "$450.001", 1), true},
		{"", true},
		{"service date,quadrant\n3/28/18,UR,extra\n", true},
		{"service date,quadrant\n3/28/18,U\"R\n", true},
		{"service date,quadrant\n\"3/28/18,UR\n", true},
		{"service date,quadrant\n", true},
		{"Provider NPI,provider_npi\n1497775531,1497775532\n", true},
		{"a\n1\n1\n1\n", true},
		{fuzzOldServicePayload, false},
		{`{"lines": [` + fuzzLine + `]}`, false},
		{`[` + fuzzLine + `,` + fuzzLine + `]`, false},
		{fuzzLine, false},
		{strings.Replace(fuzzOldServicePayload, `"provider_npi":`, `"Provider NPI": "1497775531", "provider_npi":`, 1), false},
		{strings.Replace(fuzzOldServicePayload, `"provider_npi": "1497775530"`, `"provider_npi": "1497775530", "provider_npi": "1497775531"`, 1), false},
		{strings.Replace(fuzzOldServicePayload, "1497775530", "١٤٩٧٧٧٥٥٣٠", 1), false},
		{strings.Replace(fuzzOldServicePayload, "100.0,", "1e400,", 1), false},
		{strings.Replace(fuzzOldServicePayload, "100.0,", "99999999999999999999,", 1), false},
		{strings.Replace(fuzzOldServicePayload, "GRP-1000", `x'); DROP TABLE claims;--`, 1), false},
		{`{"lines": [], "note": "x"}`, false},
		{`{"lines": [{}, {"service_date": "someday", "submitted_procedure": "X1", "plan_group": "G", "subscriber": "S",
		   "provider_npi": "123", "provider_fees": "-5", "allowed_fees": 1e2, "member_coinsurance": "1.234",
		   "member_copay": true, "colour": "red"}], "note": "x"}`, false},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), false},
	}
	for _, body := range []string{"", "  ", "{", `{"lines": }`, `"a string"`, `42`, `null`, `{"lines": 5}`, `{"lines": [1, 2]}`, `[[]]`, `{"a":1}{"b":2}`} {
		seeds = append(seeds, seed{body, false})
	}
	return seeds
}

// FuzzDecodeAndParse: whatever the body, decoding and parsing never panic;
// an accepted claim satisfies the domain's invariants, and a refused one is
// refused with an error the HTTP layer maps to a 4xx.
func FuzzDecodeAndParse(f *testing.F) {
	for _, s := range decodeAndParseSeeds(f) {
		f.Add([]byte(s.body), s.isCSV)
	}
	f.Fuzz(func(t *testing.T, body []byte, isCSV bool) {
		decode := claim.DecodeJSON
		if isCSV {
			decode = claim.DecodeCSV
		}
		in, err := decode(bytes.NewReader(body))
		if err != nil {
			// A bytes.Reader never fails, so every decode error is ErrMalformed.
			require.ErrorIs(t, err, claim.ErrMalformed, "decode error %v", err)
			return
		}
		lines, err := claim.Parse(in, claim.DefaultRules())
		if err != nil {
			var problems claim.Problems
			require.True(t, errors.As(err, &problems), "parse error is not claim.Problems: %T %v", err, err)
			require.NotEmpty(t, problems)
			for _, p := range problems {
				require.NotEmpty(t, p.Rule)
				require.NotEmpty(t, p.Detail)
				require.GreaterOrEqual(t, p.Line, -1)
				require.Less(t, p.Line, max(len(in.Lines), 1))
			}
			return
		}

		require.NotEmpty(t, lines)
		require.LessOrEqual(t, len(lines), claim.MaxLines)
		require.Len(t, lines, len(in.Lines))
		var sum claim.Cents
		for i, l := range lines {
			for name, c := range map[string]claim.Cents{
				"provider_fees": l.ProviderFees, "allowed_fees": l.AllowedFees,
				"member_coinsurance": l.MemberCoinsurance, "member_copay": l.MemberCopay,
			} {
				require.GreaterOrEqual(t, c, claim.Cents(0), "line %d %s", i, name)
				require.LessOrEqual(t, c, claim.MaxAmount, "line %d %s", i, name)
			}
			require.Len(t, l.ProviderNPI, 10, "line %d NPI %q", i, l.ProviderNPI)
			for _, b := range []byte(l.ProviderNPI) {
				require.True(t, b >= '0' && b <= '9', "line %d NPI %q is not 10 ASCII digits", i, l.ProviderNPI)
			}
			require.True(t, strings.HasPrefix(l.SubmittedProcedure, "D"), "line %d procedure %q", i, l.SubmittedProcedure)
			require.Equal(t, strings.ToUpper(l.SubmittedProcedure), l.SubmittedProcedure)
			require.Equal(t, strings.ToUpper(l.Quadrant), l.Quadrant)
			require.NotEmpty(t, strings.TrimSpace(l.PlanGroup), "line %d plan_group", i)
			require.NotEmpty(t, strings.TrimSpace(l.Subscriber), "line %d subscriber", i)
			// Postgres text holds only valid UTF-8 without NUL: an accepted
			// line must be storable, or the claim fails late with a 500.
			for name, v := range map[string]string{
				"submitted_procedure": l.SubmittedProcedure, "quadrant": l.Quadrant,
				"plan_group": l.PlanGroup, "subscriber": l.Subscriber,
			} {
				require.True(t, utf8.ValidString(v) && !strings.ContainsRune(v, 0),
					"line %d %s %q is not storable text (invalid UTF-8 or NUL)", i, name, v)
			}
			require.Equal(t, time.UTC, l.ServiceDate.Location(), "line %d service date", i)
			require.Equal(t, l.ServiceDate.Truncate(24*time.Hour), l.ServiceDate, "line %d service date is a calendar date", i)
			require.Equal(t, l.ProviderFees+l.MemberCoinsurance+l.MemberCopay-l.AllowedFees, l.NetFee())
			sum += l.NetFee()
		}
		require.Equal(t, sum, claim.Claim{Lines: lines}.NetFee())

		// Text is kept as sent: every U+FFFD in the accepted lines was written
		// by the sender, literally or as the escape \ufffd; none stands in for
		// something that was not a character (a lone surrogate escape).
		replacements := 0
		for _, l := range lines {
			for _, v := range []string{l.SubmittedProcedure, l.Quadrant, l.PlanGroup, l.Subscriber} {
				replacements += strings.Count(v, "\ufffd")
			}
		}
		sent := bytes.Count(body, []byte("\ufffd")) + bytes.Count(bytes.ToLower(body), []byte(`\ufffd`))
		require.LessOrEqual(t, replacements, sent, "U+FFFD appeared in the lines that the body did not contain")
		var perProvider claim.Cents
		for _, c := range (claim.Claim{Lines: lines}).ProviderNetFees() {
			perProvider += c
		}
		require.Equal(t, sum, perProvider, "per-provider net fees add up to the claim's")
	})
}

// centsReference is an independent reading of the money syntax docs/api.md
// documents: an optional "$", digits with or without thousands separators
// in groups of three, and at most two decimals.
var centsReference = regexp.MustCompile(`^\$?([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.([0-9]{1,2}))?$`)

// FuzzParseCents: ParseCents never panics; what it accepts is non-negative,
// bounded, written back exactly by String, and agrees with the reference.
func FuzzParseCents(f *testing.F) {
	for _, s := range []string{
		"$150.00 ", "150.00", "150", "$1,234.50", "150.5", "0", "0.01", " $10.00 ", "1,000,000",
		"100.0", "999,999,999.99", "007.10", "", "  ", "$", "-1", "-0.01", "$-5", "1.234", "150.505",
		"1e2", "1E2", "NaN", "nan", "Inf", "+Inf", "-Inf", "abc", "12a", "1,23", "12,3456", ",123", "1.",
		".5", "1..2", "$$1", "1 000", "+5", "0x10", "1_000", "1000000000", "1,000,000,000.00", "１２",
		"١٢٣", "1e400", "99999999999999999999", "($5.00)", "00000000000000000000001.00", "9223372036854775807",
		"\u00a0150\u00a0", "0,000", "000,000,001",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := claim.ParseCents(s)
		want, wantOK := referenceCents(s)
		if err != nil {
			require.False(t, wantOK, "ParseCents(%q) refused (%v) what the reference reads as %d", s, err, want)
			return
		}
		require.True(t, wantOK, "ParseCents(%q) = %d, the reference refuses it", s, c)
		require.Equal(t, want, c, "ParseCents(%q)", s)
		require.GreaterOrEqual(t, c, claim.Cents(0))
		require.LessOrEqual(t, c, claim.MaxAmount)
		back, err := claim.ParseCents(c.String())
		require.NoError(t, err, "ParseCents(%q) of %q", c.String(), s)
		require.Equal(t, c, back, "round trip through %q", c.String())
	})
}

// referenceCents reads s with centsReference, in cents; ok is false when the
// syntax is wrong or the amount is over claim.MaxAmount.
func referenceCents(s string) (claim.Cents, bool) {
	m := centsReference.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, false
	}
	whole := strings.TrimLeft(strings.ReplaceAll(m[1], ",", ""), "0")
	if len(whole) > 9 {
		return 0, false
	}
	var dollars int64
	if whole != "" {
		d, err := strconv.ParseInt(whole, 10, 64)
		if err != nil {
			return 0, false
		}
		dollars = d
	}
	cents, _ := strconv.ParseInt((m[2] + "00")[:2], 10, 64)
	return claim.Cents(dollars*100 + cents), true
}
