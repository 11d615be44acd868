package claim_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// hostileLineJSON is one valid line; the cases below change one thing in it.
const hostileLineJSON = `{"service_date": "2025-01-15", "submitted_procedure": "D0180", "quadrant": null,
  "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": "1497775530",
  "provider_fees": 100.0, "allowed_fees": 10.0, "member_coinsurance": 0.0, "member_copay": 0.0}`

const hostileSampleHeader = `service date,"submitted procedure",quadrant,"Plan/Group #",Subscriber#,"Provider NPI","provider fees","Allowed fees","member coinsurance","member copay"`

const hostileSampleRow = `3/28/18 0:00,D4211,UR,GRP-1000,3730189502,1497775538,$950.00 ,$95.00 ,$50.00 ,$50.00 `

// TestHostileInputsParse is the parser's side of the HTTP hostile-input
// table: what DecodeJSON/DecodeCSV and Parse make of each input. Outcomes:
// "malformed" (ErrMalformed, a 400), a field and rule (Problems, a 422), or
// "ok" with the plan_group the line keeps.
func TestHostileInputsParse(t *testing.T) {
	t.Parallel()
	planGroup := func(v string) string {
		return strings.Replace(hostileLineJSON, `"GRP-1000"`, v, 1)
	}
	csvBody := func(row string) string { return hostileSampleHeader + "\n" + row + "\n" }
	cases := []struct {
		name  string
		body  string
		isCSV bool
		// want is "malformed", "ok", or "field/rule" (rule may be empty: any rule).
		want string
		// plan, for "ok", is the plan_group stored.
		plan string
	}{
		{name: "100k [", body: strings.Repeat("[", 100_000), want: "malformed"},
		{name: "100k [ balanced", body: strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), want: "malformed"},
		{name: "1001 lines", body: "[" + strings.TrimSuffix(strings.Repeat(hostileLineJSON+",", claim.MaxLines+1), ",") + "]", want: "lines/line_count"},
		{name: "100k CSV rows", body: hostileSampleHeader + "\n" + strings.Repeat(hostileSampleRow+"\n", 100_000), isCSV: true, want: "lines/line_count"},
		{name: "1e400", body: strings.Replace(hostileLineJSON, "100.0", "1e400", 1), want: "provider_fees/money"},
		{name: "99999999999999999999", body: strings.Replace(hostileLineJSON, "100.0", "99999999999999999999", 1), want: "provider_fees/money"},
		{name: "arabic-indic NPI", body: strings.Replace(hostileLineJSON, "1497775530", "١٤٩٧٧٧٥٥٣٠", 1), want: "provider_npi/npi_format"},
		{name: "fullwidth NPI", body: strings.Replace(hostileLineJSON, "1497775530", "１４９７７７５５３０", 1), want: "provider_npi/npi_format"},
		{name: "NUL escape", body: planGroup(`"GRP\u0000"`), want: "plan_group/"},
		{name: "NUL byte in CSV", body: csvBody(strings.Replace(hostileSampleRow, "GRP-1000", "GRP\x00", 1)), isCSV: true, want: "plan_group/"},
		{name: "invalid UTF-8 in CSV", body: csvBody(strings.Replace(hostileSampleRow, "GRP-1000", "GRP\xff", 1)), isCSV: true, want: "plan_group/"},
		{name: "invalid UTF-8 in JSON", body: planGroup("\"GRP\xff\""), want: "malformed"},
		{name: "lone surrogate", body: planGroup(`"GRP\ud800"`), want: "plan_group/"},
		{name: "lone surrogate beside an escaped U+FFFD", body: planGroup(`"GRP\ud800\ufffd"`), want: "plan_group/"},
		{name: "lone low surrogate beside a literal U+FFFD", body: planGroup("\"GRP\\udc00\ufffd\""), want: "plan_group/"},
		{name: "escaped U+FFFD alone", body: planGroup(`"GRP\ufffd"`), want: "ok", plan: "GRP\ufffd"},
		{name: "surrogate pair", body: planGroup(`"GRP\ud83d\ude00"`), want: "ok", plan: "GRP\U0001F600"},
		{name: "SQL", body: planGroup(`"x'); DROP TABLE claims;--"`), want: "ok", plan: "x'); DROP TABLE claims;--"},
		{name: "same key twice", body: strings.Replace(hostileLineJSON, `"provider_npi": "1497775530"`, `"provider_npi": "1497775530", "provider_npi": "1497775531"`, 1), want: "provider_npi/duplicate_field"},
		{name: "lines twice", body: `{"lines": [` + hostileLineJSON + `], "lines": []}`, want: "lines/duplicate_field"},
		{name: "wrong column count", body: csvBody(hostileSampleRow + ",extra"), isCSV: true, want: "malformed"},
		{name: "NUL in claim_id", body: `{"claim_id": "PAY\u00001", "lines": [` + hostileLineJSON + `]}`, want: "claim_id/text"},
		{name: "lone surrogate in claim_id", body: `{"claim_id": "PAY\ud800", "lines": [` + hostileLineJSON + `]}`, want: "claim_id/text"},
		{name: "claim_id of 256 characters", body: `{"claim_id": "` + strings.Repeat("x", 256) + `", "lines": [` + hostileLineJSON + `]}`, want: "claim_id/claim_id"},
		{name: "200 KB plan_group", body: planGroup(`"` + strings.Repeat("G", 200_000) + `"`), want: "plan_group/length"},
		{name: "200 KB subscriber", body: strings.Replace(hostileLineJSON, "3730189502", strings.Repeat("9", 200_000), 1), want: "subscriber/length"},
		{name: "65-character subscriber", body: strings.Replace(hostileLineJSON, "3730189502", strings.Repeat("9", 65), 1), want: "subscriber/length"},
		{name: "64-character subscriber", body: strings.Replace(hostileLineJSON, "3730189502", strings.Repeat("9", 64), 1), want: "ok", plan: "GRP-1000"},
		{name: "64 multi-byte characters in plan_group", body: planGroup(`"` + strings.Repeat("é", 64) + `"`), want: "ok", plan: strings.Repeat("é", 64)},
		{name: "17-character procedure", body: strings.Replace(hostileLineJSON, "D0180", "D"+strings.Repeat("0", 16), 1), want: "submitted_procedure/length"},
		{name: "17-character quadrant", body: strings.Replace(hostileLineJSON, `"quadrant": null`, `"quadrant": "`+strings.Repeat("U", 17)+`"`, 1), want: "quadrant/length"},
		{name: "10 KB unknown field name", body: strings.Replace(hostileLineJSON, "{", `{"`+strings.Repeat("n", 10_000)+`": 1, `, 1), want: strings.Repeat("n", 64) + "…/unknown_field"},
		{name: "service date 0000-01-01", body: strings.Replace(hostileLineJSON, "2025-01-15", "0000-01-01", 1), want: "service_date/service_date_range"},
		{name: "service date 9999-12-31", body: strings.Replace(hostileLineJSON, "2025-01-15", "9999-12-31", 1), want: "service_date/service_date_range"},
		{name: "service date 1899-12-31", body: strings.Replace(hostileLineJSON, "2025-01-15", "1899-12-31", 1), want: "service_date/service_date_range"},
		{name: "service date 1900-01-01", body: strings.Replace(hostileLineJSON, "2025-01-15", "1900-01-01", 1), want: "ok", plan: "GRP-1000"},
		{name: "BOM", body: "\xef\xbb\xbf" + csvBody(hostileSampleRow), isCSV: true, want: "ok", plan: "GRP-1000"},
		{name: "CRLF", body: strings.ReplaceAll(csvBody(hostileSampleRow), "\n", "\r\n"), isCSV: true, want: "ok", plan: "GRP-1000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			decode := claim.DecodeJSON
			if tc.isCSV {
				decode = claim.DecodeCSV
			}
			in, err := decode(strings.NewReader(tc.body))
			if err == nil {
				var lines []claim.Line
				lines, err = claim.Parse(in, claim.DefaultRules())
				if err == nil && tc.want == "ok" {
					for _, l := range lines {
						require.Equal(t, tc.plan, l.PlanGroup)
						require.True(t, utf8.ValidString(l.PlanGroup))
					}
					return
				}
				if err == nil {
					require.Failf(t, "accepted", "want %s; got lines %+v", tc.want, lines)
				}
			}
			switch {
			case tc.want == "malformed":
				require.ErrorIs(t, err, claim.ErrMalformed)
			case tc.want == "ok":
				require.NoError(t, err)
			default:
				field, rule, _ := strings.Cut(tc.want, "/")
				var problems claim.Problems
				require.True(t, errors.As(err, &problems), "want Problems, got %v", err)
				found := false
				for _, p := range problems {
					found = found || p.Field == field && (rule == "" || p.Rule == rule)
				}
				require.True(t, found, "want %s among %v", tc.want, problems)
			}
		})
	}
}
