package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// metricSeries scrapes /metrics and returns every claimd_http_* series, by
// its metric name and labels.
func metricSeries(t *testing.T, url string) map[string]map[string]string {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	require.NoError(t, err)
	out := map[string]map[string]string{}
	for name, f := range families {
		if !strings.HasPrefix(name, "claimd_http_") {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key, _ := json.Marshal(labels)
			out[name+string(key)] = labels
		}
	}
	return out
}

// randomToken is n random bytes of the printable ASCII a method or a header
// value may hold.
func randomToken(r *rand.Rand, n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

// Requests with made-up methods, paths, headers and content types, sent by
// a client without a key, cannot grow the metrics: after the first round has
// met every route and answer, a second round of different random requests
// adds no series, and every label value comes from a fixed set.
func TestMetricSeriesBoundedUnderHostileRequests(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-1"}})
	r := rand.New(rand.NewPCG(12, 34))
	paths := []string{"/claims", "/claims/batch", "/claims/%s", "/top-providers", "/healthz", "/readyz", "/docs/%s", "/%s", "/claims/%s/%s", "/%s/%s"}
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
	round := func(n int) {
		client := &http.Client{Timeout: 10 * time.Second}
		for range n {
			method := methods[r.IntN(len(methods))]
			if r.IntN(2) == 0 {
				method = strings.ToUpper(randomToken(r, 1+r.IntN(20)))
			}
			path := paths[r.IntN(len(paths))]
			path = strings.ReplaceAll(path, "%s", randomToken(r, 1+r.IntN(30)))
			req, err := http.NewRequest(method, s.url+path, strings.NewReader(randomToken(r, r.IntN(50))))
			require.NoError(t, err)
			req.Header.Set("Content-Type", randomToken(r, 1+r.IntN(20))+"/"+randomToken(r, 1+r.IntN(20)))
			req.Header.Set("X-"+randomToken(r, 8), randomToken(r, 40))
			req.Header.Set("X-Request-Id", randomToken(r, 1+r.IntN(200)))
			if r.IntN(3) == 0 {
				req.Header.Set("Authorization", "Bearer "+randomToken(r, 20))
			}
			res, err := client.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			require.Less(t, res.StatusCode, 500, "%s %s", method, path)
		}
	}
	metricSeries(t, s.url) // the scrape itself is counted from the next one on
	round(3000)
	first := metricSeries(t, s.url)
	round(3000)
	second := metricSeries(t, s.url)
	for key := range second {
		if _, ok := first[key]; !ok {
			t.Logf("new series %s", key)
		}
	}
	require.Equal(t, len(first), len(second), "random requests added series")

	routes := map[string]bool{"unmatched": true, "/claims": true, "/claims/batch": true, "/claims/{id}": true,
		"/top-providers": true, "/healthz": true, "/readyz": true, "/metrics": true, "/openapi.json": true,
		"/openapi.yaml": true, "/docs": true, "/docs/*": true}
	knownMethods := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
		"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true, "other": true}
	for key, labels := range second {
		require.True(t, routes[labels["route"]], "route label of %s", key)
		require.True(t, knownMethods[labels["method"]], "method label of %s", key)
		if code, ok := labels["code"]; ok {
			require.Regexp(t, `^[1-5][0-9][0-9]$`, code, key)
		}
	}
	require.Less(t, len(second), 150, "a bounded number of series")
}

// With the limiter's Redis unreachable, a client still gets at most its
// limit: each instance limits it alone, and says so once, not per request.
func TestRateLimitFailsSafeWithoutRedis(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	dead := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	s := mustStackWith(t, stackOptions{limit: redis_rate.PerMinute(5), limiterRedis: dead,
		log: slog.New(slog.NewJSONHandler(logs, nil))})
	codes := map[int]int{}
	var retryAfter string
	for range 40 {
		res := mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil)
		codes[res.status]++
		if res.status == http.StatusTooManyRequests {
			retryAfter = res.header.Get("Retry-After")
		}
	}
	require.Equal(t, map[int]int{200: 5, 429: 35}, codes, "the burst of the limit, then refusals")
	secs, err := strconv.Atoi(retryAfter)
	require.NoError(t, err)
	require.True(t, secs >= 1 && secs <= 12, "Retry-After %d: one more every 12 s at 5/min", secs)
	require.Equal(t, 1, strings.Count(logs.String(), "rate limiter cannot reach Redis"), "one log line, not one per request")
	metrics := string(mustDo(t, http.MethodGet, s.url+"/metrics", "", nil).body)
	require.Contains(t, metrics, `claimd_rate_limit_decisions_total{decision="local_allowed",route="top-providers"} 5`)
	require.Contains(t, metrics, `claimd_rate_limit_decisions_total{decision="local_limited",route="top-providers"} 35`)
}

// Per-client caps answer 429 with a Retry-After: idempotency keys (sync),
// queued claims (async).
func TestClientCapsAre429(t *testing.T) {
	t.Parallel()
	t.Run("idempotency keys", func(t *testing.T) {
		t.Parallel()
		s := mustStackWith(t, stackOptions{keysPerClient: 2})
		for i := range 2 {
			res := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": fmt.Sprint("key-", i)})
			require.Equal(t, http.StatusCreated, res.status)
		}
		res := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": "key-2"})
		require.Equal(t, http.StatusTooManyRequests, res.status, string(res.body))
		require.Equal(t, "60", res.header.Get("Retry-After"))
		require.Contains(t, string(res.body), "idempotency keys")
		res = mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": "key-1"})
		require.Equal(t, http.StatusCreated, res.status, "a retry with a key held is answered")
		require.Equal(t, "true", res.header.Get("Idempotency-Replayed"))
	})
	t.Run("queued claims", func(t *testing.T) {
		t.Parallel()
		s := mustStackWith(t, stackOptions{rabbitURL: testenv.SharedRabbitMQURL(), queuedPerClient: 2})
		require.Eventually(t, func() bool {
			return mustDo(t, http.MethodGet, s.url+"/readyz", "", nil).json(t)["rabbitmq"] == "ok"
		}, 10*time.Second, 10*time.Millisecond)
		for range 2 {
			require.Equal(t, http.StatusAccepted, mustPost(t, s.url+"/claims", "application/json", oldServicePayload).status)
		}
		res := mustPost(t, s.url+"/claims", "application/json", oldServicePayload)
		require.Equal(t, http.StatusTooManyRequests, res.status, string(res.body))
		require.NotEmpty(t, res.header.Get("Retry-After"))
		require.Equal(t, 2, s.queued(t), "the refused claim was not published")
		s.startWorker(t)
		require.Eventually(t, func() bool {
			return mustPost(t, s.url+"/claims", "application/json", oldServicePayload).status == http.StatusAccepted
		}, 10*time.Second, 50*time.Millisecond, "stored claims free their places")
	})
}

// A claim Postgres could not store (a NUL in its claim_id) is refused with
// its own 422 in a batch, and changes nothing for its neighbours: they are
// stored in the same group commit, no batch falls back to one transaction
// per claim, and no answer carries database text.
func TestBadClaimInBatchFailsAlone(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	var items []string
	for i := range 20 {
		id := fmt.Sprint("PAY-", i)
		if i%5 == 2 {
			id = "PAY-\\u0000-" + fmt.Sprint(i)
		}
		items = append(items, `{"claim_id": "`+id+`", "lines": [`+oldServicePayload+`]}`)
	}
	res := mustPost(t, s.url+"/claims/batch", "application/json", "["+strings.Join(items, ",")+"]")
	require.Equal(t, http.StatusOK, res.status)
	var answer struct {
		Created, Refused, Failed int
		Results                  []struct {
			Index, Status int
			Problem       *hostileProblem
		}
	}
	require.NoError(t, json.Unmarshal(res.body, &answer))
	require.Equal(t, 16, answer.Created)
	require.Equal(t, 4, answer.Refused)
	require.Zero(t, answer.Failed)
	for _, r := range answer.Results {
		if r.Index%5 == 2 {
			require.Equal(t, 422, r.Status)
			require.Equal(t, "claim_id", r.Problem.Errors[0].Field)
		}
	}
	require.NotContains(t, string(res.body), "SQLSTATE")
	metrics := string(mustDo(t, http.MethodGet, s.url+"/metrics", "", nil).body)
	require.Contains(t, metrics, "claimd_ingest_batch_fallbacks_total 0")
}

// Every answer carries its request id: the client's own only when it is
// short and plain, which is all that reaches the logs.
func TestRequestIDsBounded(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := mustStackWith(t, stackOptions{log: slog.New(slog.NewJSONHandler(logs, nil)), lookupLogSample: 1})
	for sent, kept := range map[string]bool{
		"pay-2026-12-06.0001:a_b":             true,
		strings.Repeat("r", 64):               true,
		strings.Repeat("r", 65):               false,
		"has space":                           false,
		"quote\"and\\backslash":               false,
		"<script>":                            false,
		"\u00e9t\u00e9":                       false,
		strings.Repeat("x", 10_000) + "-tail": false,
	} {
		res := mustDoWith(t, http.MethodGet, s.url+"/top-providers", map[string]string{"X-Request-Id": sent}, nil)
		id := res.header.Get("X-Request-Id")
		if kept {
			require.Equal(t, sent, id)
			continue
		}
		require.Regexp(t, `^[0-9a-f]{32}$`, id, "%.40q is replaced", sent)
	}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		if line["msg"] == "request" {
			n++
			require.LessOrEqual(t, len(fmt.Sprint(line["request_id"])), 64)
		}
	}
	require.Equal(t, 8, n)
	require.NotContains(t, logs.String(), "xxxxxxxxxx")
}

// Successful lookups are logged one in LookupLogSample; failed ones, and
// every other request, always. The metrics count every request.
func TestLookupAccessLogSampled(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := mustStackWith(t, stackOptions{log: slog.New(slog.NewJSONHandler(logs, nil)), lookupLogSample: 3})
	for range 7 {
		require.Equal(t, http.StatusOK, mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil).status)
	}
	for range 2 {
		require.Equal(t, http.StatusBadRequest, mustDo(t, http.MethodGet, s.url+"/top-providers?limit=0", "", nil).status)
	}
	for range 2 {
		require.Equal(t, http.StatusNotFound, mustDo(t, http.MethodGet, s.url+"/claims/00000000-0000-7000-8000-000000000000", "", nil).status)
	}
	logged := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		if line["msg"] == "request" {
			logged[fmt.Sprintf("%v %v", line["route"], line["status"])]++
		}
	}
	require.Equal(t, map[string]int{"/top-providers 200": 3, "/top-providers 400": 2, "/claims/{id} 404": 2}, logged,
		"the 1st, 4th and 7th of 7 lookups, and every other request")
	metrics := string(mustDo(t, http.MethodGet, s.url+"/metrics", "", nil).body)
	require.Contains(t, metrics, `claimd_http_requests_total{code="200",method="GET",route="/top-providers"} 7`)
}
