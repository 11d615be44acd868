package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

type stack struct {
	url   string
	dbURL string
	store *store.Store
	// In async mode: the queue, and what a worker needs.
	queue  queue.Config
	claims *ingest.Service
	status *queue.Status
}

// stackOptions varies a test stack; the zero value has no rate limit, no API
// keys, and logs through t.Log.
type stackOptions struct {
	limit   redis_rate.Limit
	apiKeys []string
	log     *slog.Logger
	// rabbitURL, when set, serves in async mode with a queue of the test's own there.
	rabbitURL string
	// noAnonymousReads refuses claim reads without API keys (the service's
	// default); the test stacks allow them, as make run does.
	noAnonymousReads bool
	// Caps per client; 0 keeps the defaults.
	keysPerClient, queuedPerClient int64
	// batchTimeout, when set, bounds a batch request instead of 2 minutes;
	// maxBatchBytes its body instead of 64 MiB.
	batchTimeout  time.Duration
	maxBatchBytes int64
	// readTimeout, when set, is the server's ReadTimeout.
	readTimeout time.Duration
	// limiterRedis, when set, is the Redis the rate limiter uses.
	limiterRedis redis.UniversalClient
	// lookupLogSample, when set, replaces the default 1 in 100.
	lookupLogSample int
}

// mustStack serves the real router over a fresh database and a private key
// prefix of the shared Redis, with the ranking rebuilt once (empty) so
// lookups answer from Redis.
func mustStack(t *testing.T, limit redis_rate.Limit) stack {
	t.Helper()
	return mustStackWith(t, stackOptions{limit: limit})
}

func mustStackWith(tb testing.TB, o stackOptions) stack {
	tb.Helper()
	st, dbURL := testenv.MustStore(tb)
	rdb, prefix, shards := testenv.SuiteRedis(tb)
	log := o.log
	if log == nil {
		log = testenv.Logger(tb)
	}
	reg := prometheus.NewRegistry()
	keys := rank.Keys{Prefix: prefix, Shards: shards}
	ranking := rank.NewRedis(rdb, keys)
	rm := rank.NewMetrics(reg)
	rec := rank.NewReconciler(st, ranking, rank.ReconcilerConfig{}, rm, log)
	_, err := rec.RunOnce(context.Background(), rank.Rebuild)
	require.NoError(tb, err)

	claims := ingest.New(st, ranking, ingest.Config{KeysPerClient: o.keysPerClient}, reg, log)
	tb.Cleanup(claims.Close)
	status := queue.NewStatus(rdb, keys, queue.StatusConfig{TTL: time.Hour, PerClient: o.queuedPerClient})
	deps := httpapi.Deps{
		Claims:   claims,
		Statuses: queue.NewStatusReader(st, status, true),
		Finder:   st,
		// A lookup's Redis read may take longer than the service's 50 ms here,
		// under -race beside other packages' tests: these tests check where
		// answers come from, not how fast (a timed-out read would answer
		// from Postgres).
		Top:                 rank.NewFallback(ranking, st, rank.FallbackConfig{RedisTimeout: 5 * time.Second}, rm, log),
		RateLimiter:         httpapi.NewRateLimiter(cmp.Or(o.limiterRedis, rdb), o.limit, keys.RateLimit),
		APIKeys:             httpapi.NewAPIKeys(o.apiKeys),
		AllowAnonymousReads: !o.noAnonymousReads,
		BatchTimeout:        o.batchTimeout,
		MaxBatchBytes:       o.maxBatchBytes,
		PingPostgres:        st.Ping,
		PingRedis:           func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		Registry:            reg,
		Log:                 log,
		LookupLogSample:     o.lookupLogSample,
	}
	var qcfg queue.Config
	if o.rabbitURL != "" {
		qcfg = queue.Config{URL: o.rabbitURL, Queue: testenv.MustQueueName(tb)}
		pub := queue.NewPublisher(queue.PublisherConfig{Config: qcfg}, status, queue.NewMetrics(reg), log)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); pub.Run(ctx) }()
		tb.Cleanup(func() { cancel(); <-done })
		deps.Queue = pub
		deps.Statuses = queue.NewStatusReader(st, status, false)
	}
	srv := httptest.NewUnstartedServer(httpapi.NewServer(deps))
	srv.Config.ReadTimeout = o.readTimeout
	srv.Start()
	tb.Cleanup(srv.Close)
	return stack{url: srv.URL, dbURL: dbURL, store: st, queue: qcfg, claims: claims, status: status}
}

func mustSample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/claim_1234.csv") // a copy of shared/data/claim_1234.csv
	require.NoError(t, err)
	return b
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(r.body, &v), string(r.body))
	return v
}

func mustDo(t *testing.T, method, url, contentType string, body io.Reader) response {
	t.Helper()
	header := map[string]string{}
	if contentType != "" {
		header["Content-Type"] = contentType
	}
	return mustDoWith(t, method, url, header, body)
}

// mustDoWith sends a request with the given headers and reads the whole answer.
func mustDoWith(t *testing.T, method, url string, header map[string]string, body io.Reader) response {
	t.Helper()
	var sent []byte // kept to hold the request to the OpenAPI description
	if body != nil {
		var err error
		sent, err = io.ReadAll(body)
		require.NoError(t, err)
		body = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	out := response{status: res.StatusCode, header: res.Header, body: b}
	mustMatchSpec(t, req, sent, out)
	return out
}

func mustPost(t *testing.T, url, contentType, body string) response {
	t.Helper()
	return mustDo(t, http.MethodPost, url, contentType, strings.NewReader(body))
}

func TestPostSampleCSV(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	res := mustDo(t, http.MethodPost, s.url+"/claims", "text/csv", bytes.NewReader(mustSample(t)))
	require.Equal(t, http.StatusCreated, res.status, string(res.body))
	require.Contains(t, string(res.body), `"net_fee":2320.00,`, "money is written with exactly two decimals")
	require.Contains(t, string(res.body), `"provider_npi":"1497775538","provider_fees":950.00,"allowed_fees":95.00,"member_coinsurance":50.00,"member_copay":50.00,"net_fee":955.00}`)
	body := res.json(t)
	id := body["id"].(string)
	require.Equal(t, "/claims/"+id, res.header.Get("Location"))
	lines := body["lines"].([]any)
	require.Len(t, lines, 4)
	first := lines[0].(map[string]any)
	require.Equal(t, map[string]any{
		"service_date": "2018-03-28", "submitted_procedure": "D0180", "quadrant": nil,
		"plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": "1497775535",
		"provider_fees": 150.0, "allowed_fees": 10.0, "member_coinsurance": 10.0, "member_copay": 20.0,
		"net_fee": 170.0,
	}, first)
	require.Equal(t, "UR", lines[3].(map[string]any)["quadrant"])

	got := mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil)
	require.Equal(t, http.StatusOK, got.status)
	require.JSONEq(t, string(res.body), string(got.body))

	top := mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil)
	require.Equal(t, http.StatusOK, top.status)
	require.JSONEq(t, `{"top_providers": [
		{"provider_npi": "1497775538", "total_net_fee": 955.00},
		{"provider_npi": "1497775537", "total_net_fee": 750.00},
		{"provider_npi": "1497775536", "total_net_fee": 445.00},
		{"provider_npi": "1497775535", "total_net_fee": 170.00}], "source": "redis"}`, string(top.body))
	require.Contains(t, string(top.body), `"total_net_fee":955.00}`)
}

const oldServicePayload = `{"service_date": "2025-01-15", "submitted_procedure": "D0180",
  "quadrant": null, "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi":
  "1497775530", "provider_fees": 100.0, "allowed_fees": 100.0, "member_coinsurance": 0.0,
  "member_copay": 0.0}`

func TestPostClaimJSONForms(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	line := `{"Service Date": "3/28/18 0:00", "submittedProcedure": "d4211", "Quadrant": "ur",
	  "Plan/Group #": "GRP-1000", "Subscriber#": "3730189502", "Provider NPI": "1497775538",
	  "provider fees": "$1,950.00 ", "allowedFees": 95, "member_coinsurance": 50.5, "MEMBER_COPAY": "50"}`
	for name, tc := range map[string]struct{ path, contentType, body, netFee string }{
		"envelope":            {"/claims", "application/json", `{"lines": [` + line + `]}`, "1955.50"},
		"bare array":          {"/claims/", "application/json; charset=utf-8", `[` + line + `,` + line + `]`, "3911.00"},
		"flat line":           {"/claims", "application/json", line, "1955.50"},
		"old service payload": {"/claims/", "application/json", oldServicePayload, "0.00"},
	} {
		res := mustPost(t, s.url+tc.path, tc.contentType, tc.body)
		require.Equal(t, http.StatusCreated, res.status, "%s: %s", name, res.body)
		require.Contains(t, string(res.body), `"net_fee":`+tc.netFee+`,`, name)
	}
}

func TestPostClaimErrors(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	big := `{"lines": [` + strings.Repeat(" ", 1<<20) + `]}`
	for name, tc := range map[string]struct {
		contentType, body string
		status            int
	}{
		"malformed json":   {"application/json", `{"lines": [`, http.StatusBadRequest},
		"json not a claim": {"application/json", `"D0180"`, http.StatusBadRequest},
		"malformed csv":    {"text/csv", "service date,quadrant\n\"3/28/18,UR\n", http.StatusBadRequest},
		"too large":        {"application/json", big, http.StatusRequestEntityTooLarge},
		"text/plain":       {"text/plain", oldServicePayload, http.StatusUnsupportedMediaType},
		"no content type":  {"", oldServicePayload, http.StatusUnsupportedMediaType},
		"form":             {"application/x-www-form-urlencoded", "a=b", http.StatusUnsupportedMediaType},
		"invalid":          {"application/json", strings.Replace(oldServicePayload, "D0180", "X0180", 1), http.StatusUnprocessableEntity},
		"empty lines":      {"application/json", `{"lines": []}`, http.StatusUnprocessableEntity},
		"header-only csv":  {"text/csv", "service date,quadrant\n", http.StatusUnprocessableEntity},
	} {
		res := mustPost(t, s.url+"/claims", tc.contentType, tc.body)
		require.Equal(t, tc.status, res.status, "%s: %s", name, res.body)
		require.Equal(t, "application/problem+json", res.header.Get("Content-Type"), name)
		p := res.json(t)
		require.Equal(t, float64(tc.status), p["status"], name)
		require.NotEmpty(t, p["title"], name)
		require.NotEmpty(t, p["type"], name)
	}

	// A chunked body over the limit is cut off while it is read.
	body := io.MultiReader(strings.NewReader(`[`), strings.NewReader(strings.Repeat(" ", 2<<20)))
	require.Equal(t, http.StatusRequestEntityTooLarge, mustPostChunked(t, s.url+"/claims", "application/json", body))

	top, err := s.store.TopProviders(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Empty(t, top, "no refused claim left anything behind")
}

func TestInvalidClaimNamesLineAndFieldAndStoresNothing(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	sample := string(mustSample(t))
	bad := strings.Replace(sample, "D4346", "4346", 1)       // line 2: procedure
	bad = strings.Replace(bad, "1497775538", "149777553", 1) // line 3: NPI
	bad = strings.Replace(bad, "$450.00 ", "$450.001", 1)    // line 1: money
	res := mustPost(t, s.url+"/claims", "text/csv", bad)
	require.Equal(t, http.StatusUnprocessableEntity, res.status, string(res.body))
	require.NotContains(t, string(res.body), "3730189502", "no subscriber number in errors")

	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Errors []struct {
			Line   *int   `json:"line"`
			Field  string `json:"field"`
			Rule   string `json:"rule"`
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(res.body, &p))
	require.Equal(t, 422, p.Status)
	type item struct {
		line        int
		field, rule string
	}
	var got []item
	for _, e := range p.Errors {
		require.NotNil(t, e.Line)
		require.NotEmpty(t, e.Detail)
		got = append(got, item{*e.Line, e.Field, e.Rule})
	}
	require.Equal(t, []item{
		{1, "provider_fees", "money"},
		{2, "submitted_procedure", "procedure_code"},
		{3, "provider_npi", "npi_format"},
	}, got)

	top, err := s.store.TopProviders(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Empty(t, top, "a claim is stored whole or not at all")

	unknown := mustPost(t, s.url+"/claims", "application/json", strings.Replace(oldServicePayload, `"quadrant"`, `"tooth"`, 1))
	require.Equal(t, http.StatusUnprocessableEntity, unknown.status)
	require.Contains(t, string(unknown.body), `unknown field \"tooth\"; accepted fields: service_date, submitted_procedure, quadrant`)
}

func TestGetClaimNotFound(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	for _, id := range []string{"01a22397-b5be-7f3d-9c23-54112a0662b7", "nope"} {
		res := mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil)
		require.Equal(t, http.StatusNotFound, res.status)
		require.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
	}
	require.Equal(t, http.StatusNotFound, mustDo(t, http.MethodGet, s.url+"/nowhere", "", nil).status)
	require.Equal(t, http.StatusMethodNotAllowed, mustDo(t, http.MethodDelete, s.url+"/claims", "", nil).status)
}

func TestTopProvidersLimit(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	for i := 0; i < 12; i++ {
		body := strings.Replace(oldServicePayload, "1497775530", "14977755"+string(rune('0'+i/10))+string(rune('0'+i%10)), 1)
		body = strings.Replace(body, `"provider_fees": 100.0`, `"provider_fees": 1`+strings.Repeat("0", 1+i%3)+`.0`, 1)
		require.Equal(t, http.StatusCreated, mustPost(t, s.url+"/claims", "application/json", body).status)
	}
	count := func(query string) int {
		res := mustDo(t, http.MethodGet, s.url+"/top-providers"+query, "", nil)
		require.Equal(t, http.StatusOK, res.status, string(res.body))
		return len(res.json(t)["top_providers"].([]any))
	}
	require.Equal(t, 10, count(""))
	require.Equal(t, 10, count("/"))
	require.Equal(t, 3, count("?limit=3"))
	require.Equal(t, 12, count("?limit=100"))
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=-1", "?limit=ten", "?limit=1.5"} {
		res := mustDo(t, http.MethodGet, s.url+"/top-providers"+q, "", nil)
		require.Equal(t, http.StatusBadRequest, res.status, q)
		require.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
	}
}

func TestTopProvidersRateLimit(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.PerMinute(10))
	for i := 0; i < 10; i++ {
		res := mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil)
		require.Equal(t, http.StatusOK, res.status, "request %d", i+1)
	}
	res := mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	require.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
	require.NotEmpty(t, res.header.Get("Retry-After"))
	require.NotEqual(t, "0", res.header.Get("Retry-After"))
	// Other routes are not limited.
	require.Equal(t, http.StatusOK, mustDo(t, http.MethodGet, s.url+"/healthz", "", nil).status)
}

func TestParseRateLimit(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]redis_rate.Limit{
		"10/min": redis_rate.PerMinute(10), "100/s": redis_rate.PerSecond(100), "5/h": redis_rate.PerHour(5),
		"0": {}, "off": {}, "7/minute": redis_rate.PerMinute(7),
	} {
		got, err := httpapi.ParseRateLimit(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"10", "ten/min", "10/day", "-1/s", "10/"} {
		_, err := httpapi.ParseRateLimit(in)
		require.Error(t, err, in)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	require.Equal(t, http.StatusCreated, mustDo(t, http.MethodPost, s.url+"/claims", "text/csv", bytes.NewReader(mustSample(t))).status)
	require.Equal(t, http.StatusUnprocessableEntity, mustPost(t, s.url+"/claims", "application/json", `{"lines": []}`).status)
	require.Equal(t, http.StatusOK, mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil).status)

	h := mustDo(t, http.MethodGet, s.url+"/healthz", "", nil)
	require.Equal(t, http.StatusOK, h.status)
	r := mustDo(t, http.MethodGet, s.url+"/readyz", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"status": "ready", "postgres": "ok", "redis": "ok"}`, string(r.body))

	m := mustDo(t, http.MethodGet, s.url+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, m.status)
	text := string(m.body)
	for _, want := range []string{
		`claimd_http_requests_total{code="201",method="POST",route="/claims"} 1`,
		`claimd_http_requests_total{code="422",method="POST",route="/claims"} 1`,
		`claimd_http_request_duration_seconds_count{method="GET",route="/top-providers"} 1`,
		`claimd_claims_ingested_total{mode="sync"} 1`,
		`claimd_claim_lines_ingested_total{mode="sync"} 4`,
		`claimd_claim_submissions_total{mode="sync",outcome="stored"} 1`,
		`claimd_claim_submissions_total{mode="sync",outcome="invalid"} 1`,
		`claimd_validation_failures_total{rule="line_count"} 1`,
		`claimd_top_providers_answers_total{source="redis"} 1`,
		`claimd_redis_update_failures_total 0`,
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "3730189502")
	require.NotContains(t, text, "1497775538", "no NPI labels")
}

func TestReadyzFailsWithoutPostgres(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	s.store.Close() // the pool is gone: Postgres cannot answer
	res := mustDo(t, http.MethodGet, s.url+"/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	require.JSONEq(t, `{"status": "not_ready", "postgres": "down", "redis": "ok"}`, string(res.body))
	require.Equal(t, http.StatusOK, mustDo(t, http.MethodGet, s.url+"/healthz", "", nil).status, "alive all the same")
}

func TestMethodNotAllowedSaysWhatIs(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	res := mustDo(t, http.MethodDelete, s.url+"/claims", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, res.status)
	require.Equal(t, "GET, POST", res.header.Get("Allow"))
	res = mustDo(t, http.MethodPost, s.url+"/top-providers", "application/json", nil)
	require.Equal(t, http.StatusMethodNotAllowed, res.status)
	require.Equal(t, "GET", res.header.Get("Allow"))
}

// A chunked CSV body over the limit is a 413 even though the decoder stops
// taking lines long before the limit.
func TestChunkedCSVOverLimit(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	sample := string(mustSample(t))
	header, rows, _ := strings.Cut(sample, "\n")
	body := header + "\n" + strings.Repeat(rows, (2<<20)/len(rows))
	require.Equal(t, http.StatusRequestEntityTooLarge,
		mustPostChunked(t, s.url+"/claims", "text/csv", strings.NewReader(body)))
}

// mustPostChunked posts body without a Content-Length, as a stream, and
// returns the status.
func mustPostChunked(t *testing.T, url, contentType string, body io.Reader) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, io.NopCloser(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	// The transport may still be sending the body: only the answer is checked.
	mustMatchSpec(t, req, nil, response{status: res.StatusCode, header: res.Header, body: b})
	return res.StatusCode
}
