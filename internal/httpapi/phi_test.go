package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// phiSubscriber is a subscriber number that must never leave the service
// except in the claim it belongs to (201 and GET /claims/{id} answers).
const phiSubscriber = "PHI-9876543210"

type phiRequest struct {
	name, method, path, contentType, body string
	header                                []string // name, value pairs
	// want is the expected status; 0 when any non-5xx status will do (the
	// status is the hostile tests' business; this test is about the bodies).
	want int
}

// phiRequests sends the known subscriber number through valid claims and
// through every way a claim can be refused.
func phiRequests(tb testing.TB) []phiRequest {
	tb.Helper()
	sample := strings.ReplaceAll(readHostileSample(tb), "3730189502", phiSubscriber)
	const js, csv = "application/json", "text/csv"
	line := withField("subscriber", mustJSON(phiSubscriber))
	// Every field of the line is wrong except the subscriber.
	everyFieldWrong := `{"service_date": "someday", "submitted_procedure": "Q1", "quadrant": {"a": 1},
	  "plan_group": ["G"], "subscriber": "` + phiSubscriber + `", "provider_npi": "1",
	  "provider_fees": "-5", "allowed_fees": 1e2, "member_coinsurance": "1.234", "member_copay": true,
	  "colour": "red"}`
	return []phiRequest{
		{name: "valid CSV", method: http.MethodPost, path: "/claims", contentType: csv, body: sample, want: 201},
		{name: "valid JSON", method: http.MethodPost, path: "/claims", contentType: js, body: line, want: 201},
		{name: "422 on every field", method: http.MethodPost, path: "/claims", contentType: js,
			body: `{"lines": [` + everyFieldWrong + `, {}], "note": "x"}`, want: 422},
		{name: "422 on every field, flat", method: http.MethodPost, path: "/claims", contentType: js, body: everyFieldWrong, want: 422},
		{name: "422 subscriber given twice", method: http.MethodPost, path: "/claims", contentType: js,
			body: strings.Replace(line, "{", `{"Subscriber#": "`+phiSubscriber+`", `, 1), want: 422},
		{name: "422 subscriber as an object", method: http.MethodPost, path: "/claims", contentType: js,
			body: withField("subscriber", `{"id": "`+phiSubscriber+`"}`), want: 422},
		{name: "422 subscriber as an array", method: http.MethodPost, path: "/claims", contentType: js,
			body: withField("subscriber", `["`+phiSubscriber+`"]`), want: 422},
		{name: "422 CSV with every other field wrong", method: http.MethodPost, path: "/claims", contentType: csv,
			body: hostileCSVHeader + "\nsomeday,Q1,,,\"" + phiSubscriber + "\",1,-5,x,1.234,$\n", want: 422},
		{name: "422 invalid claim_id", method: http.MethodPost, path: "/claims", contentType: js,
			body: `{"claim_id": {}, "lines": [` + line + `]}`, want: 422},
		{name: "400 CSV unclosed quote in the subscriber cell", method: http.MethodPost, path: "/claims", contentType: csv,
			body: strings.Replace(sample, phiSubscriber, `"`+phiSubscriber, 1), want: 400},
		{name: "400 CSV bare quote in the subscriber cell", method: http.MethodPost, path: "/claims", contentType: csv,
			body: strings.Replace(sample, phiSubscriber, `PHI-98"76543210`+phiSubscriber, 1), want: 400},
		{name: "400 CSV wrong column count", method: http.MethodPost, path: "/claims", contentType: csv,
			body: strings.Replace(sample, phiSubscriber, phiSubscriber+",extra", 1), want: 400},
		{name: "400 truncated JSON", method: http.MethodPost, path: "/claims", contentType: js, body: strings.TrimSuffix(line, "}"), want: 400},
		{name: "400 unquoted subscriber", method: http.MethodPost, path: "/claims", contentType: js,
			body: strings.Replace(line, `"`+phiSubscriber+`"`, phiSubscriber, 1), want: 400},
		{name: "400 lines not objects", method: http.MethodPost, path: "/claims", contentType: js, body: `{"lines": ["` + phiSubscriber + `"]}`, want: 400},
		{name: "idempotent claim", method: http.MethodPost, path: "/claims", contentType: js, body: line,
			header: []string{"Idempotency-Key", "phi-key-1"}, want: 201},
		{name: "idempotent claim replayed", method: http.MethodPost, path: "/claims", contentType: js, body: line,
			header: []string{"Idempotency-Key", "phi-key-1"}, want: 201},
		{name: "422 idempotency key reused for another claim", method: http.MethodPost, path: "/claims", contentType: js,
			body: strings.Replace(line, "1497775530", "1497775531", 1), header: []string{"Idempotency-Key", "phi-key-1"}, want: 422},
		{name: "400 malformed idempotency key", method: http.MethodPost, path: "/claims", contentType: js, body: line,
			header: []string{"Idempotency-Key", `"unterminated`}, want: 400},
		{name: "claim_id", method: http.MethodPost, path: "/claims", contentType: js,
			body: `{"claim_id": "EXT-PHI-1", "lines": [` + line + `]}`, want: 201},
		{name: "claim_id resubmitted", method: http.MethodPost, path: "/claims", contentType: js,
			body: `{"claim_id": "EXT-PHI-1", "lines": [` + line + `]}`, want: 200},
		{name: "413 too large", method: http.MethodPost, path: "/claims", contentType: js,
			body: `[` + strings.Repeat(line+",", (1<<20)/len(line)+1) + line + `]`, want: 413},
		{name: "415 text/plain", method: http.MethodPost, path: "/claims", contentType: "text/plain", body: line, want: 415},
		// Stored data Postgres cannot hold (a NUL byte) with the subscriber
		// beside it: whatever the status, the answer and the log keep it out.
		{name: "NUL in plan_group", method: http.MethodPost, path: "/claims", contentType: js,
			body: withFields(map[string]string{"subscriber": mustJSON(phiSubscriber), "plan_group": `"G\u0000"`})},
		{name: "invalid UTF-8 in a CSV cell", method: http.MethodPost, path: "/claims", contentType: csv,
			body: strings.Replace(sample, "GRP-1000", "GRP\xff", 1)},
		{name: "GET claim by subscriber number", method: http.MethodGet, path: "/claims/" + phiSubscriber, want: 404},
		{name: "top providers", method: http.MethodGet, path: "/top-providers", want: 200},
		{name: "readyz", method: http.MethodGet, path: "/readyz", want: 200},
	}
}

// TestSubscriberNeverLeaks ingests a known subscriber number through valid and
// refused requests, with debug logging on, and finds it in no log line, no
// metric and no error body.
func TestSubscriberNeverLeaks(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := newHostileStack(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	created := map[string]bool{}
	for _, rq := range phiRequests(t) {
		var body []byte
		if rq.body != "" {
			body = []byte(rq.body)
		}
		res := s.do(t, rq.method, rq.path, rq.contentType, body, rq.header...)
		if rq.want != 0 {
			require.Equal(t, rq.want, res.status, "%s: %s", rq.name, res.body)
		}
		if res.status == http.StatusCreated || res.status == http.StatusOK && rq.method == http.MethodPost {
			// The claim itself carries its subscriber: that is where it belongs.
			require.Contains(t, string(res.body), phiSubscriber, rq.name)
			var c storedClaim
			require.NoError(t, json.Unmarshal(res.body, &c), rq.name)
			created[c.ID] = true
			continue
		}
		require.NotContains(t, string(res.body), phiSubscriber, "%s: the answer (%d) leaks the subscriber number", rq.name, res.status)
	}
	require.Len(t, created, 4, "the four distinct valid claims were stored")
	for id := range created {
		res := s.do(t, http.MethodGet, "/claims/"+id, "", nil)
		require.Equal(t, http.StatusOK, res.status)
		require.Contains(t, string(res.body), phiSubscriber, "GET /claims/{id} answers the claim whole")
	}

	metrics := s.do(t, http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, metrics.status)
	require.Contains(t, string(metrics.body), "claimd_http_requests_total", "the metrics were served")
	require.NotContains(t, string(metrics.body), phiSubscriber, "metrics leak the subscriber number")
	require.NotContains(t, string(metrics.body), "9876543210")

	out := logs.String()
	require.Contains(t, out, `"msg":"request"`, "the access log was captured")
	require.NotContains(t, out, phiSubscriber, "logs leak the subscriber number")
	require.NotContains(t, out, "9876543210")
}

// TestSubscriberInMisplacedColumnNotEchoed: a CSV whose header names the
// columns in the wrong order puts the subscriber numbers in a money or date
// column. The 422 must still not repeat them (problem details quote the
// offending value today).
func TestSubscriberInMisplacedColumnNotEchoed(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := newHostileStack(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	sample := strings.ReplaceAll(readHostileSample(t), "3730189502", phiSubscriber)
	for name, header := range map[string][2]string{
		"subscriber and provider fees swapped": {`Subscriber#,"Provider NPI","provider fees"`, `"provider fees","Provider NPI",Subscriber#`},
		"subscriber and service date swapped":  {`service date,"submitted procedure",quadrant,"Plan/Group #",Subscriber#`, `Subscriber#,"submitted procedure",quadrant,"Plan/Group #",service date`},
	} {
		body := strings.Replace(sample, header[0], header[1], 1)
		require.NotEqual(t, sample, body, name)
		res := s.do(t, http.MethodPost, "/claims", "text/csv", []byte(body))
		require.Equal(t, http.StatusUnprocessableEntity, res.status, "%s: %s", name, res.body)
		require.NotContains(t, string(res.body), phiSubscriber, "%s: the 422 quotes the subscriber number", name)
	}
	require.NotContains(t, logs.String(), phiSubscriber)
}
