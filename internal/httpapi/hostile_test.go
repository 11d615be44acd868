package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines to log into.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hostileStack is the real router over a fresh database and a private Redis
// prefix, built like mustStack in httpapi_test.go but for any testing.TB (a
// fuzz target builds it once with its *testing.F), with the logger given and
// a direct SQL pool to count what was stored.
type hostileStack struct {
	url    string
	client *http.Client
	db     *pgxpool.Pool
}

func newHostileStack(tb testing.TB, log *slog.Logger) hostileStack {
	tb.Helper()
	s := mustStackWith(tb, stackOptions{log: log})
	db, err := pgxpool.New(context.Background(), s.dbURL)
	require.NoError(tb, err)
	tb.Cleanup(db.Close)
	return hostileStack{url: s.url, client: &http.Client{}, db: db}
}

// storeCounts is what is in the database: claims, lines, and the two sums of
// net fees that must always agree (totals table and lines).
type storeCounts struct {
	Claims, Lines          int64
	TotalsSum, LinesNetSum int64
}

func (s hostileStack) counts(tb testing.TB) storeCounts {
	tb.Helper()
	var c storeCounts
	err := s.db.QueryRow(context.Background(), `SELECT
	    (SELECT count(*) FROM claims),
	    (SELECT count(*) FROM claim_lines),
	    (SELECT coalesce(sum(total_net_fee_cents), 0)::bigint FROM provider_totals),
	    (SELECT coalesce(sum(net_fee_cents), 0)::bigint FROM claim_lines)`).
		Scan(&c.Claims, &c.Lines, &c.TotalsSum, &c.LinesNetSum)
	require.NoError(tb, err)
	require.Equal(tb, c.LinesNetSum, c.TotalsSum, "provider totals equal the sum of the lines")
	return c
}

type hostileResponse struct {
	status      int
	contentType string
	body        []byte
}

// do sends one request, with extra headers given as name, value pairs; it
// fails the test only if the request cannot be made or the connection breaks
// (an aborted handler is a server fault too).
func (s hostileStack) do(tb testing.TB, method, path, contentType string, body []byte, header ...string) hostileResponse {
	tb.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	require.NoError(tb, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := s.client.Do(req)
	require.NoError(tb, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(tb, err)
	mustMatchSpec(tb, req, body, response{status: res.StatusCode, header: res.Header, body: b})
	return hostileResponse{status: res.StatusCode, contentType: res.Header.Get("Content-Type"), body: b}
}

// storedLine is one line of a claim as GET /claims/{id} answers it.
type storedLine struct {
	ServiceDate        string          `json:"service_date"`
	SubmittedProcedure string          `json:"submitted_procedure"`
	Quadrant           *string         `json:"quadrant"`
	PlanGroup          string          `json:"plan_group"`
	Subscriber         string          `json:"subscriber"`
	ProviderNPI        string          `json:"provider_npi"`
	ProviderFees       json.RawMessage `json:"provider_fees"`
	AllowedFees        json.RawMessage `json:"allowed_fees"`
	MemberCoinsurance  json.RawMessage `json:"member_coinsurance"`
	MemberCopay        json.RawMessage `json:"member_copay"`
	NetFee             json.RawMessage `json:"net_fee"`
}

type storedClaim struct {
	ID    string          `json:"id"`
	Lines []storedLine    `json:"lines"`
	Net   json.RawMessage `json:"net_fee"`
}

type hostileProblem struct {
	Status int `json:"status"`
	Errors []struct {
		Line  *int   `json:"line"`
		Field string `json:"field"`
		Rule  string `json:"rule"`
	} `json:"errors"`
}

const hostileLine = `{"service_date": "2025-01-15", "submitted_procedure": "D0180", "quadrant": null,
  "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": "1497775530",
  "provider_fees": 100.0, "allowed_fees": 10.0, "member_coinsurance": 0.0, "member_copay": 0.0}`

// withField returns hostileLine with one field's JSON value replaced.
func withField(field, jsonValue string) string {
	return withFields(map[string]string{field: jsonValue})
}

// withFields returns hostileLine with some fields' JSON values replaced.
func withFields(values map[string]string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(hostileLine), &m); err != nil {
		panic(err)
	}
	for field, v := range values {
		m[field] = json.RawMessage(v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

const hostileCSVHeader = `service date,"submitted procedure",quadrant,"Plan/Group #",Subscriber#,"Provider NPI","provider fees","Allowed fees","member coinsurance","member copay"`

const hostileCSVRow = `3/28/18 0:00,D0180,,GRP-1000,3730189502,1497775535,$150.00 ,$10.00 ,$10.00 ,$20.00 `

func readHostileSample(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("testdata/claim_1234.csv")
	require.NoError(tb, err)
	return string(b)
}

type hostileCase struct {
	name        string
	contentType string
	body        string
	// want is the expected status. A 5xx is never right: it is a server defect.
	want int
	// problem, for a 422, is a field/rule pair that must be among the problems.
	problem [2]string
	// stored, for a 201, checks the claim as read back with GET /claims/{id}.
	stored func(t *testing.T, c storedClaim)
}

func oneLine(check func(t *testing.T, l storedLine)) func(t *testing.T, c storedClaim) {
	return func(t *testing.T, c storedClaim) {
		t.Helper()
		require.Len(t, c.Lines, 1)
		check(t, c.Lines[0])
	}
}

func hostileCases(tb testing.TB) []hostileCase {
	tb.Helper()
	sample := readHostileSample(tb)
	const js, csv = "application/json", "text/csv"
	tinyJSONLines := "[" + strings.TrimSuffix(strings.Repeat("{},", 100_000), ",") + "]"
	fullJSONLines := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(hostileLine+",", n), ",") + "]"
	}
	planGroup := func(want string) func(t *testing.T, c storedClaim) {
		return oneLine(func(t *testing.T, l storedLine) { require.Equal(t, want, l.PlanGroup) })
	}
	sql := `x'); DROP TABLE claims;--`
	look := [][2]string{
		{"arabic-indic", "١٤٩٧٧٧٥٥٣٠"},
		{"extended arabic-indic", "۱۴۹۷۷۷۵۵۳۰"},
		{"fullwidth", "１４９７７７５５３０"},
		{"devanagari", "१४९७७७५५३०"},
		{"mathematical bold", "𝟏𝟒𝟗𝟕𝟕𝟕𝟓𝟓𝟑𝟎"},
		{"superscript", "¹⁴⁹⁷⁷⁷⁵⁵³⁰"},
		{"ascii with a zero-width space", "149777553\u200b0"},
		{"ascii with a trailing combining mark", "1497775530\u0301"},
	}

	cases := []hostileCase{
		// Deeply nested JSON: encoding/json stops at depth 10000, so it is malformed.
		{name: "100k [ unbalanced", contentType: js, body: strings.Repeat("[", 100_000), want: 400},
		{name: "100k [ balanced", contentType: js, body: strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), want: 400},
		{name: "100k nested objects", contentType: js, body: strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000), want: 400},
		{name: "100k [ as lines", contentType: js, body: `{"lines":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, want: 400},
		{name: "5k-deep array as a field value (valid JSON)", contentType: js,
			body: withField("plan_group", strings.Repeat("[", 5000)+strings.Repeat("]", 5000)), want: 422, problem: [2]string{"plan_group", "value_type"}},

		// Line counts: at most 1000 lines (claim.MaxLines), bodies at most 1 MiB.
		{name: "100k JSON lines (30 MB)", contentType: js, body: fullJSONLines(100_000), want: 413},
		{name: "100k empty JSON lines (under 1 MiB)", contentType: js, body: tinyJSONLines, want: 422, problem: [2]string{"lines", "line_count"}},
		{name: "100k CSV rows (8 MB)", contentType: csv, body: hostileCSVHeader + "\n" + strings.Repeat(hostileCSVRow+"\n", 100_000), want: 413},
		{name: "100k empty CSV rows (under 1 MiB)", contentType: csv, body: hostileCSVHeader + "\n" + strings.Repeat(",,,,,,,,,\n", 100_000), want: 422, problem: [2]string{"lines", "line_count"}},
		{name: "1001 JSON lines", contentType: js, body: fullJSONLines(1001), want: 422, problem: [2]string{"lines", "line_count"}},
		{name: "1000 JSON lines", contentType: js, body: fullJSONLines(1000), want: 201,
			stored: func(t *testing.T, c storedClaim) { require.Len(t, c.Lines, 1000) }},

		// Huge numbers.
		{name: "provider_fees 1e400", contentType: js, body: withField("provider_fees", "1e400"), want: 422, problem: [2]string{"provider_fees", "money"}},
		{name: "provider_fees 99999999999999999999", contentType: js, body: withField("provider_fees", "99999999999999999999"), want: 422, problem: [2]string{"provider_fees", "money"}},
		{name: "provider_fees \"99999999999999999999\"", contentType: js, body: withField("provider_fees", `"99999999999999999999"`), want: 422, problem: [2]string{"provider_fees", "money"}},
		{name: "provider_fees with 100k digits", contentType: js, body: withField("provider_fees", "1"+strings.Repeat("0", 100_000)), want: 422, problem: [2]string{"provider_fees", "money"}},
		{name: "provider_fees 1000000000 (one over the cap)", contentType: js, body: withField("provider_fees", "1000000000"), want: 422, problem: [2]string{"provider_fees", "money"}},
		{name: "allowed_fees 9223372036854775807 (int64 max)", contentType: js, body: withField("allowed_fees", "9223372036854775807"), want: 422, problem: [2]string{"allowed_fees", "money"}},
		{name: "member_copay 1e-400", contentType: js, body: withField("member_copay", "1e-400"), want: 422, problem: [2]string{"member_copay", "money"}},
		{name: "member_copay -0", contentType: js, body: withField("member_copay", "-0"), want: 422, problem: [2]string{"member_copay", "money"}},
		{name: "provider_fees 999999999.99 (the cap) is stored exactly", contentType: js, body: withField("provider_fees", "999999999.99"), want: 201,
			stored: oneLine(func(t *testing.T, l storedLine) {
				require.Equal(t, "999999999.99", string(l.ProviderFees))
				require.Equal(t, "999999989.99", string(l.NetFee))
			})},

		// NUL bytes. Postgres text cannot hold U+0000, so the claim must be
		// refused as invalid (422), never reach the database and fail there.
		{name: "NUL (\\u0000) in plan_group", contentType: js, body: withField("plan_group", `"GRP\u00001000"`), want: 422, problem: [2]string{"plan_group", ""}},
		{name: "NUL (\\u0000) in subscriber", contentType: js, body: withField("subscriber", `"37301\u000089502"`), want: 422, problem: [2]string{"subscriber", ""}},
		{name: "NUL (\\u0000) in submitted_procedure", contentType: js, body: withField("submitted_procedure", `"D0180\u0000"`), want: 422, problem: [2]string{"submitted_procedure", ""}},
		{name: "raw NUL byte in a JSON string (invalid JSON)", contentType: js, body: strings.Replace(hostileLine, "GRP-1000", "GRP\x001000", 1), want: 400},
		{name: "raw NUL byte in a CSV cell", contentType: csv, body: strings.Replace(sample, "GRP-1000", "GRP\x001000", 1), want: 422, problem: [2]string{"plan_group", ""}},
		{name: "NUL inside a field name (names ignore punctuation)", contentType: js,
			body: strings.Replace(hostileLine, `"plan_group"`, `"plan\u0000group"`, 1), want: 201, stored: planGroup("GRP-1000")},
		// The claim's own id reaches Postgres too: the same rules hold for it.
		{name: "NUL (\\u0000) in claim_id", contentType: js, body: `{"claim_id": "PAY\u00001", "lines": [` + hostileLine + `]}`,
			want: 422, problem: [2]string{"claim_id", "text"}},
		{name: "NUL (\\u0000) in a flat line's claim_id", contentType: js,
			body: strings.Replace(hostileLine, "{", `{"claim_id": "\u0000", `, 1), want: 422, problem: [2]string{"claim_id", "text"}},
		{name: "lone surrogate in claim_id", contentType: js, body: `{"claim_id": "PAY\udc00", "lines": [` + hostileLine + `]}`,
			want: 422, problem: [2]string{"claim_id", "text"}},
		// Text fields are as long as real codes and ids get, no longer.
		{name: "200 KB plan_group", contentType: js, body: withField("plan_group", mustJSON(strings.Repeat("G", 200_000))),
			want: 422, problem: [2]string{"plan_group", "length"}},
		{name: "200 KB subscriber", contentType: js, body: withField("subscriber", mustJSON(strings.Repeat("9", 200_000))),
			want: 422, problem: [2]string{"subscriber", "length"}},
		{name: "17-character procedure", contentType: js, body: withField("submitted_procedure", mustJSON("D"+strings.Repeat("1", 16))),
			want: 422, problem: [2]string{"submitted_procedure", "length"}},
		{name: "64-character subscriber is stored", contentType: js, body: withField("subscriber", mustJSON(strings.Repeat("7", 64))),
			want: 201, stored: oneLine(func(t *testing.T, l storedLine) { require.Equal(t, strings.Repeat("7", 64), l.Subscriber) })},
		{name: "200 KB quadrant in CSV", contentType: csv, body: strings.Replace(sample, ",UR,", ","+strings.Repeat("U", 200_000)+",", 1),
			want: 422, problem: [2]string{"quadrant", "length"}},
		{name: "200 KB unknown field name", contentType: js, body: strings.Replace(hostileLine, "{", `{"`+strings.Repeat("x", 200_000)+`": 1, `, 1),
			want: 422, problem: [2]string{strings.Repeat("x", 64) + "…", "unknown_field"}},
		// Service dates are plausible: from 1900-01-01 to the day after today.
		{name: "service date 0000-01-01", contentType: js, body: withField("service_date", `"0000-01-01"`), want: 422, problem: [2]string{"service_date", "service_date_range"}},
		{name: "service date 9999-12-31", contentType: js, body: withField("service_date", `"9999-12-31"`), want: 422, problem: [2]string{"service_date", "service_date_range"}},
		{name: "service date 1/1/1899 in CSV", contentType: csv, body: strings.Replace(sample, "3/28/18 0:00", "1/1/1899", 1), want: 422, problem: [2]string{"service_date", "service_date_range"}},
		{name: "service date tomorrow", contentType: js, body: withField("service_date", mustJSON(time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly))), want: 201},
		{name: "service date 1900-01-01", contentType: js, body: withField("service_date", `"1900-01-01"`), want: 201},
		// Invalid UTF-8 is refused, never sent to Postgres (which refuses it)
		// nor quietly turned into U+FFFD (which encoding/json would do).
		{name: "invalid UTF-8 in a JSON body", contentType: js, body: strings.Replace(hostileLine, "GRP-1000", "GRP\xff1000", 1), want: 400},
		{name: "invalid UTF-8 in a CSV cell", contentType: csv, body: strings.Replace(sample, "GRP-1000", "GRP\xff1000", 1), want: 422, problem: [2]string{"plan_group", ""}},
		{name: "invalid UTF-8 in a CSV quadrant", contentType: csv, body: strings.Replace(sample, ",UR,", ",U\xc3,", 1), want: 422, problem: [2]string{"quadrant", ""}},
		// A lone surrogate escape is valid JSON syntax but no character:
		// encoding/json turns it into U+FFFD, which would change the data silently.
		{name: "lone surrogate escape in JSON", contentType: js, body: withField("plan_group", `"GRP\ud800"`), want: 422, problem: [2]string{"plan_group", "text"}},
		{name: "lone surrogate escape beside an escaped U+FFFD", contentType: js, body: withField("plan_group", `"GRP\ud800\ufffd"`), want: 422, problem: [2]string{"plan_group", "text"}},
		{name: "lone surrogate escape beside a literal U+FFFD", contentType: js, body: withField("plan_group", "\"GRP\\udc00\ufffd\""), want: 422, problem: [2]string{"plan_group", "text"}},
		{name: "an escaped U+FFFD alone is text", contentType: js, body: withField("plan_group", `"GRP\ufffd"`), want: 201, stored: planGroup("GRP\ufffd")},
		{name: "a surrogate pair is one character", contentType: js, body: withField("plan_group", `"GRP\ud83d\ude00"`), want: 201, stored: planGroup("GRP\U0001F600")},

		// SQL-looking strings are data: stored and read back verbatim.
		{name: "SQL in plan_group", contentType: js, body: withField("plan_group", mustJSON(sql)), want: 201, stored: planGroup(sql)},
		{name: "SQL in subscriber and quadrant", contentType: js,
			body: withFields(map[string]string{"subscriber": `"'; DELETE FROM provider_totals;--"`, "quadrant": `"ur' OR '1'='1"`}),
			want: 201, stored: oneLine(func(t *testing.T, l storedLine) {
				require.Equal(t, "'; DELETE FROM provider_totals;--", l.Subscriber)
				require.NotNil(t, l.Quadrant)
				require.Equal(t, "UR' OR '1'='1", *l.Quadrant, "quadrant is stored upper-case")
			})},
		{name: "SQL in a CSV cell", contentType: csv, body: strings.Replace(sample, "GRP-1000", `"x'); DROP TABLE claims;--"`, 1), want: 201,
			stored: func(t *testing.T, c storedClaim) {
				require.Len(t, c.Lines, 4)
				require.Equal(t, sql, c.Lines[0].PlanGroup)
				require.Equal(t, "GRP-1000", c.Lines[1].PlanGroup)
			}},
		{name: "SQL as a field name", contentType: js, body: strings.Replace(hostileLine, `"quadrant"`, `"quadrant'); DROP TABLE claims;--"`, 1), want: 422,
			problem: [2]string{"quadrant'); DROP TABLE claims;--", "unknown_field"}},

		// Duplicate JSON keys: a field given twice, under the same spelling or
		// two, is refused rather than one value silently dropped; so is a
		// claim-level member ("lines", "claim_id") given twice: storing only
		// the last "lines" array would store part of what was sent.
		{name: "same key twice", contentType: js,
			body: strings.Replace(hostileLine, `"provider_npi": "1497775530"`, `"provider_npi": "1497775530", "provider_npi": "1497775531"`, 1), want: 422,
			problem: [2]string{"provider_npi", "duplicate_field"}},
		{name: "one field under two spellings", contentType: js,
			body: strings.Replace(hostileLine, `"provider_npi": "1497775530"`, `"provider_npi": "1497775530", "Provider NPI": "1497775531"`, 1), want: 422,
			problem: [2]string{"provider_npi", "duplicate_field"}},
		{name: "\"lines\" twice", contentType: js, body: `{"lines": [` + hostileLine + `], "lines": [` + hostileLine + `,` + hostileLine + `]}`, want: 422,
			problem: [2]string{"lines", "duplicate_field"}},
		{name: "\"lines\" under two spellings", contentType: js, body: `{"lines": [` + hostileLine + `], "Lines": [` + hostileLine + `]}`, want: 422,
			problem: [2]string{"lines", "duplicate_field"}},
		{name: "claim_id and external_id both given", contentType: js, body: `{"claim_id": "A-1", "external_id": "B-2", "lines": [` + hostileLine + `]}`, want: 422,
			problem: [2]string{"claim_id", "duplicate_field"}},
		{name: "claim_id twice", contentType: js, body: `{"claim_id": "A-1", "claim_id": "A-2", "lines": [` + hostileLine + `]}`, want: 422,
			problem: [2]string{"claim_id", "duplicate_field"}},

		// CSV shape.
		{name: "CSV row with one column too many", contentType: csv, body: strings.Replace(sample, "$20.00 ", "$20.00 ,extra", 1), want: 400},
		{name: "CSV row with one column too few", contentType: csv, body: strings.Replace(sample, ",$20.00 ", "", 1), want: 400},
		{name: "CSV header with one column too few", contentType: csv, body: strings.Replace(sample, `,"member copay"`, "", 1), want: 400},
		{name: "UTF-8 BOM before the CSV header", contentType: csv, body: "\xef\xbb\xbf" + sample, want: 201,
			stored: func(t *testing.T, c storedClaim) { require.Len(t, c.Lines, 4) }},
		{name: "CRLF line ends", contentType: csv, body: strings.ReplaceAll(sample, "\n", "\r\n"), want: 201,
			stored: func(t *testing.T, c storedClaim) {
				require.Len(t, c.Lines, 4)
				require.Equal(t, "UR", *c.Lines[3].Quadrant)
				require.Equal(t, "50.00", string(c.Lines[3].MemberCopay))
			}},
		{name: "BOM and CRLF, no final newline", contentType: csv, body: "\xef\xbb\xbf" + strings.TrimSuffix(strings.ReplaceAll(sample, "\n", "\r\n"), "\r\n"), want: 201,
			stored: func(t *testing.T, c storedClaim) { require.Len(t, c.Lines, 4) }},
		{name: "blank lines between CSV rows are skipped", contentType: csv, body: strings.ReplaceAll(sample, "\n", "\n\n"), want: 201,
			stored: func(t *testing.T, c storedClaim) { require.Len(t, c.Lines, 4) }},
		{name: "CR-only line ends: malformed (a lone CR stays inside a quoted header cell)", contentType: csv, body: strings.ReplaceAll(sample, "\n", "\r"), want: 400},
		{name: "UTF-8 BOM before JSON is malformed JSON", contentType: js, body: "\xef\xbb\xbf" + hostileLine, want: 400},
	}
	for _, l := range look {
		cases = append(cases, hostileCase{name: "NPI in " + l[0] + " digits", contentType: js,
			body: withField("provider_npi", mustJSON(l[1])), want: 422, problem: [2]string{"provider_npi", "npi_format"}})
	}
	cases = append(cases,
		hostileCase{name: "fullwidth digits in money", contentType: js, body: withField("provider_fees", `"１００"`), want: 422, problem: [2]string{"provider_fees", "money"}},
		hostileCase{name: "NPI padded with no-break spaces is trimmed", contentType: js, body: withField("provider_npi", `"\u00a01497775530\u00a0"`), want: 201,
			stored: oneLine(func(t *testing.T, l storedLine) { require.Equal(t, "1497775530", l.ProviderNPI) })},
	)
	return cases
}

func mustJSON(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestHostileInputs sends each hostile input to the real router and checks
// the status, that nothing is stored unless the answer is 201, and for a 201
// what is read back.
func TestHostileInputs(t *testing.T) {
	t.Parallel()
	log := &lockedBuffer{}
	s := newHostileStack(t, slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, tc := range hostileCases(t) {
		// One stack for all rows, so rows run one after another: each checks
		// the database before and after its own request.
		t.Run(tc.name, func(t *testing.T) {
			before := s.counts(t)
			res := s.do(t, http.MethodPost, "/claims", tc.contentType, []byte(tc.body))
			after := s.counts(t)
			if res.status != http.StatusCreated {
				require.Equal(t, before, after, "a refused claim (%d) stores nothing", res.status)
			}
			require.Less(t, res.status, 500, "server defect: %d %s\nlog: %s", res.status, res.body, lastLines(log.String(), 3))
			require.True(t, json.Valid(res.body), "response is JSON: %q", res.body)
			require.Equal(t, tc.want, res.status, "%s", res.body)

			if res.status != http.StatusCreated {
				require.Equal(t, "application/problem+json", res.contentType)
				if tc.problem != [2]string{} {
					var p hostileProblem
					require.NoError(t, json.Unmarshal(res.body, &p))
					found := false
					for _, e := range p.Errors {
						if e.Field == tc.problem[0] && (tc.problem[1] == "" || e.Rule == tc.problem[1]) {
							found = true
						}
					}
					require.True(t, found, "problem %v among %s", tc.problem, res.body)
				}
				return
			}

			var posted storedClaim
			require.NoError(t, json.Unmarshal(res.body, &posted))
			require.Equal(t, before.Claims+1, after.Claims, "one claim stored")
			require.Equal(t, before.Lines+int64(len(posted.Lines)), after.Lines, "with all its lines")
			got := s.do(t, http.MethodGet, "/claims/"+posted.ID, "", nil)
			require.Equal(t, http.StatusOK, got.status, "%s", got.body)
			require.JSONEq(t, string(res.body), string(got.body), "read back as answered")
			var stored storedClaim
			require.NoError(t, json.Unmarshal(got.body, &stored))
			if tc.stored != nil {
				tc.stored(t, stored)
			}
		})
	}
	// The SQL-looking rows changed nothing else: the tables are all still there.
	c := s.counts(t)
	require.Positive(t, c.Claims)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
