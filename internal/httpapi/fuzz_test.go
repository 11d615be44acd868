package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzPostClaim posts any body under any content type to the real router
// over a real database: the answer is never a 5xx, always JSON, a refused
// claim leaves the database as it was, and an accepted one is stored whole
// and read back as answered.
func FuzzPostClaim(f *testing.F) {
	sample, err := os.ReadFile("testdata/claim_1234.csv")
	require.NoError(f, err)
	const js, csv = "application/json", "text/csv"
	line := `{"Service Date": "3/28/18 0:00", "submittedProcedure": "d4211", "Quadrant": "ur",
	  "Plan/Group #": "GRP-1000", "Subscriber#": "3730189502", "Provider NPI": "1497775538",
	  "provider fees": "$1,950.00 ", "allowedFees": 95, "member_coinsurance": 50.5, "MEMBER_COPAY": "50"}`
	for _, seed := range []struct {
		body, contentType string
	}{
		{string(sample), csv},
		{string(sample), "application/csv"},
		{string(sample), "text/csv; charset=utf-8"},
		{"\xef\xbb\xbf" + strings.ReplaceAll(string(sample), "\n", "\r\n"), csv},
		{strings.Replace(strings.Replace(string(sample), "D4346", "4346", 1), "$450.00 ", "$450.001", 1), csv},
		{"service date,quadrant\n\"3/28/18,UR\n", csv},
		{"service date,quadrant\n", csv},
		{"service date,quadrant\n3/28/18,UR,extra\n", csv},
		{`{"lines": [` + line + `]}`, js},
		{`[` + line + `,` + line + `]`, "application/json; charset=utf-8"},
		{line, js},
		{hostileLine, js},
		{withField("plan_group", `"x'); DROP TABLE claims;--"`), js},
		{withField("provider_fees", "1e400"), js},
		{withField("provider_npi", `"１４９７７７５５３０"`), js},
		{strings.Replace(hostileLine, "D0180", "X0180", 1), js},
		{strings.Replace(hostileLine, `"provider_npi": "1497775530"`, `"provider_npi": "1497775530", "Provider NPI": "1497775531"`, 1), js},
		{`{"lines": [], "note": "x"}`, js},
		{`{"claim_id": "EXT-1", "lines": [` + line + `]}`, js},
		{`{"external_id": 42, "lines": [` + hostileLine + `]}`, js},
		{strings.Replace(hostileLine, "{", `{"claim_id": "EXT-2", `, 1), js},
		{`{"lines": [`, js},
		{`"D0180"`, js},
		{strings.Repeat("[", 200), js},
		{hostileLine, "text/plain"},
		{hostileLine, ""},
		{"a=b", "application/x-www-form-urlencoded"},
	} {
		f.Add([]byte(seed.body), seed.contentType)
	}

	log := &lockedBuffer{}
	s := newHostileStack(f, slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		contentType = headerSafe(contentType)
		before := s.counts(t)
		res := s.do(t, http.MethodPost, "/claims", contentType, body)
		after := s.counts(t)
		if res.status != http.StatusCreated {
			// A refusal, or (200) the claim stored before under the same claim_id.
			require.Equal(t, before, after, "a request answered %d stores nothing", res.status)
		}
		require.Less(t, res.status, 500, "server defect: %d %s\nlog: %s", res.status, res.body, lastLines(log.String(), 2))
		require.True(t, json.Valid(res.body), "response is JSON: %q", res.body)
		if res.status != http.StatusCreated && res.status != http.StatusOK {
			require.GreaterOrEqual(t, res.status, 400, "%s", res.body)
			require.Equal(t, "application/problem+json", res.contentType)
			return
		}

		var posted storedClaim
		require.NoError(t, json.Unmarshal(res.body, &posted))
		require.NotEmpty(t, posted.Lines)
		if res.status == http.StatusCreated {
			require.Equal(t, before.Claims+1, after.Claims, "one claim stored")
			require.Equal(t, before.Lines+int64(len(posted.Lines)), after.Lines, "with all its lines")
		}
		got := s.do(t, http.MethodGet, "/claims/"+posted.ID, "", nil)
		require.Equal(t, http.StatusOK, got.status, "%s", got.body)
		var stored storedClaim
		require.NoError(t, json.Unmarshal(got.body, &stored))
		require.Len(t, stored.Lines, len(posted.Lines))
		require.JSONEq(t, string(res.body), string(got.body), "read back as answered")
	})
}

// headerSafe drops the bytes an HTTP client may not send in a header value
// (control characters other than tab), so every input reaches the server.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
