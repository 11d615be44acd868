package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/testenv"
)

// mustRun starts claimd serve in-process with env and waits for /healthz.
// The returned stop sends the equivalent of SIGTERM and waits for run to end.
func mustRun(t *testing.T, env map[string]string) (baseURL string, stop func() error) {
	t.Helper()
	baseURL, stop, _ = mustRunLogged(t, env)
	return baseURL, stop
}

// mustRunLogged is mustRun, and gives the logs.
func mustRunLogged(t *testing.T, env map[string]string) (baseURL string, stop func() error, logs *syncBuffer) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env["HTTP_ADDR"] = addr
	if _, set := env["EVENTS_EXCHANGE"]; !set {
		env["EVENTS_EXCHANGE"] = settingOff // a test that wants events names its own exchange
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		exited = make(chan struct{})
		runErr error
	)
	logs = &syncBuffer{}
	go func() {
		defer close(exited)
		runErr = run(ctx, []string{"serve"}, func(k string) string { return env[k] }, io.Discard, logs)
	}()
	wait := func() error {
		<-exited
		return runErr
	}
	t.Cleanup(func() {
		cancel()
		_ = wait()
		if t.Failed() {
			t.Logf("claimd logs:\n%s", logs.String())
		}
	})

	baseURL = "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(baseURL + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("claimd exited before it was healthy: %v", runErr)
		default:
		}
		require.True(t, time.Now().Before(deadline), "claimd did not become healthy:\n%s", logs.String())
		time.Sleep(20 * time.Millisecond)
	}
	return baseURL, func() error {
		cancel()
		return wait()
	}, logs
}

// Out of the box claimd lets nobody read claims without a key, and says at
// start who can do what without one; METRICS_ADDR moves /metrics off the
// API's address.
func TestServeSafeDefaults(t *testing.T) {
	t.Parallel()
	redisServer := testenv.MustRedisServer(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{"DATABASE_URL": testenv.MustDatabase(t), "REDIS_URL": redisServer.URL(), "METRICS_ADDR": metricsAddr}
	baseURL, stop, logs := mustRunLogged(t, env)
	// The first reconciliation builds the (empty) ranking at start. A claim
	// stored while it reads could count as drift it repaired (a warning):
	// the claim waits for it, as this test is about a quiet start.
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return regexp.MustCompile(`(?m)^claimd_reconcile_last_success_timestamp_seconds [1-9]`).Match(body)
	}, 30*time.Second, 20*time.Millisecond)
	res, err := http.Post(baseURL+"/claims", "application/json", strings.NewReader(`{"service_date": "2025-01-15",
	  "submitted_procedure": "D0180", "plan_group": "G", "subscriber": "3730189502", "provider_npi": "1497775530",
	  "provider_fees": 100, "allowed_fees": 10, "member_coinsurance": 0, "member_copay": 0}`))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	for path, want := range map[string]int{res.Header.Get("Location"): http.StatusForbidden, "/metrics": http.StatusNotFound} {
		got, err := http.Get(baseURL + path)
		require.NoError(t, err)
		got.Body.Close()
		require.Equal(t, want, got.StatusCode, path)
	}
	metrics, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	require.Contains(t, string(body), `claimd_http_requests_total{code="201",method="POST",route="/claims"} 1`)
	require.NoError(t, stop())
	require.Contains(t, logs.String(), `"level":"INFO","msg":"no API keys are set: anyone who can reach the service may post claims; reading claims is refused until API_KEYS is set"`)
	require.NotContains(t, logs.String(), `"level":"WARN"`)

	env = map[string]string{"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": redisServer.URL(), "ALLOW_ANONYMOUS_READS": "true"}
	baseURL, stop, logs = mustRunLogged(t, env)
	got, err := http.Get(baseURL + res.Header.Get("Location"))
	require.NoError(t, err)
	got.Body.Close()
	require.Equal(t, http.StatusOK, got.StatusCode)
	require.NoError(t, stop())
	require.Contains(t, logs.String(), `"level":"WARN","msg":"ALLOW_ANONYMOUS_READS is on and no API keys are set`)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type sentTotals struct {
	mu     sync.Mutex
	totals map[string]claim.Cents
}

func dollars(c claim.Cents) string {
	s := c.String()
	if c >= 100000 && rand.IntN(2) == 0 { // sometimes with thousands separators and a dollar sign
		whole, frac, _ := strings.Cut(s, ".")
		return fmt.Sprintf("$%s,%s.%s", whole[:len(whole)-3], whole[len(whole)-3:], frac)
	}
	return s
}

// postRandomClaims posts n random claims over npis from 8 clients and adds
// what each accepted claim owes its providers to sent, computed here from the
// integer cents generated, independently of the service.
func postRandomClaims(t *testing.T, baseURL string, n int, npis []string, sent *sentTotals) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				errs <- postOneRandomClaim(baseURL, npis, sent)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func postOneRandomClaim(baseURL string, npis []string, sent *sentTotals) error {
	type line map[string]any
	var (
		lines []line
		owed  = map[string]claim.Cents{}
	)
	for j := 0; j < 1+rand.IntN(4); j++ {
		npi := npis[rand.IntN(len(npis))]
		fees := claim.Cents(rand.IntN(500000))
		allowed := claim.Cents(rand.IntN(int(fees) + 1))
		coins, copay := claim.Cents(rand.IntN(10000)), claim.Cents(rand.IntN(5000))
		lines = append(lines, line{
			"service_date": "2024-05-01", "submitted_procedure": "D0" + strconv.Itoa(100+rand.IntN(900)),
			"plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": npi,
			"provider_fees": dollars(fees), "allowed_fees": dollars(allowed),
			"member_coinsurance": json.Number(coins.String()), "member_copay": dollars(copay),
		})
		owed[npi] += fees + coins + copay - allowed
	}
	body, err := json.Marshal(map[string]any{"lines": lines})
	if err != nil {
		return err
	}
	res, err := http.Post(baseURL+"/claims", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("POST /claims: %d %s", res.StatusCode, b)
	}
	sent.mu.Lock()
	defer sent.mu.Unlock()
	for npi, c := range owed {
		sent.totals[npi] += c
	}
	return nil
}

// mustPostTies gives three providers the same, highest total, so both
// sources must order equal totals the same way (NPI descending).
func mustPostTies(t *testing.T, baseURL string, sent *sentTotals) {
	t.Helper()
	for _, npi := range []string{"1999999992", "1999999991", "1999999993"} {
		body := fmt.Sprintf(`{"service_date": "2024-05-01", "submitted_procedure": "D0120", "plan_group": "GRP-1",
			"subscriber": "3730189502", "provider_npi": %q, "provider_fees": "$4,000,000.00",
			"allowed_fees": 0, "member_coinsurance": 0, "member_copay": 0}`, npi)
		res, err := http.Post(baseURL+"/claims", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusCreated, res.StatusCode)
		sent.mu.Lock()
		sent.totals[npi] += 400_000_000
		sent.mu.Unlock()
	}
	require.Equal(t, []string{"1999999993=4000000.00", "1999999992=4000000.00", "1999999991=4000000.00"},
		sent.expectedTop(3))
}

type topAnswer struct {
	TopProviders []struct {
		ProviderNPI string          `json:"provider_npi"`
		TotalNetFee json.RawMessage `json:"total_net_fee"`
	} `json:"top_providers"`
	Source string `json:"source"`
}

// list renders an answer as "npi=amount" strings, amounts as the JSON text.
func (a topAnswer) list() []string {
	out := make([]string, len(a.TopProviders))
	for i, p := range a.TopProviders {
		out[i] = p.ProviderNPI + "=" + string(p.TotalNetFee)
	}
	return out
}

func mustTop(t *testing.T, baseURL string, limit int) topAnswer {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("%s/top-providers?limit=%d", baseURL, limit))
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var a topAnswer
	require.NoError(t, json.NewDecoder(res.Body).Decode(&a))
	return a
}

// expectedTop ranks the totals as ZREVRANGE does: highest first, equal totals
// by NPI descending.
func (s *sentTotals) expectedTop(limit int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	npis := make([]string, 0, len(s.totals))
	for npi := range s.totals {
		npis = append(npis, npi)
	}
	sort.Slice(npis, func(i, j int) bool {
		a, b := s.totals[npis[i]], s.totals[npis[j]]
		if a != b {
			return a > b
		}
		return npis[i] > npis[j]
	})
	if len(npis) > limit {
		npis = npis[:limit]
	}
	out := make([]string, len(npis))
	for i, npi := range npis {
		out[i] = npi + "=" + s.totals[npi].String()
	}
	return out
}

// The whole product on real parts: claims posted over HTTP are ranked in
// Redis; with Redis stopped Postgres gives the same answer; when Redis comes
// back empty, reconciliation restores it exactly without a restart.
func TestServeRanksFallsBackAndReconciles(t *testing.T) {
	t.Parallel()
	redisServer := testenv.MustRedisServer(t)
	env := map[string]string{
		"DATABASE_URL":             testenv.MustDatabase(t),
		"REDIS_URL":                redisServer.URL(),
		"RECONCILE_INTERVAL":       "1s",
		"TOP_PROVIDERS_RATE_LIMIT": "0",
		"LOG_LEVEL":                "debug",
		"ALLOW_ANONYMOUS_READS":    "true",
	}
	baseURL, stop := mustRun(t, env)

	npis := make([]string, 120)
	for i := range npis {
		npis[i] = fmt.Sprintf("1%09d", rand.IntN(1_000_000_000))
	}
	sent := &sentTotals{totals: map[string]claim.Cents{}}
	postRandomClaims(t, baseURL, 300, npis, sent)
	mustPostTies(t, baseURL, sent)

	for _, limit := range []int{10, 100} {
		a := mustTop(t, baseURL, limit)
		require.Equal(t, "redis", a.Source)
		require.Equal(t, sent.expectedTop(limit), a.list())
	}

	redisServer.Stop()
	a := mustTop(t, baseURL, 100)
	require.Equal(t, "postgres", a.Source)
	require.Equal(t, sent.expectedTop(100), a.list())
	a = mustTop(t, baseURL, 10)
	require.Equal(t, "postgres", a.Source)
	require.Equal(t, sent.expectedTop(10), a.list())

	// Ingestion goes on without Redis, and the service stays ready.
	postRandomClaims(t, baseURL, 40, npis, sent)
	res, err := http.Get(baseURL + "/readyz")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.JSONEq(t, `{"status": "ready", "postgres": "ok", "redis": "degraded"}`, string(body))
	require.Equal(t, sent.expectedTop(100), mustTop(t, baseURL, 100).list())

	// Without Redis, Postgres alone says a claim does not exist: in sync
	// mode no claim waits in a queue.
	res, err = http.Get(baseURL + "/claims/01a22487-af71-7a68-b316-1e8068d443bb")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusNotFound, res.StatusCode)

	redisServer.Start() // empty: it keeps nothing on disk
	require.Eventually(t, func() bool { return mustTop(t, baseURL, 100).Source == "redis" },
		15*time.Second, 100*time.Millisecond, "reconciliation restores the ranking within an interval or so")
	require.Equal(t, sent.expectedTop(100), mustTop(t, baseURL, 100).list())
	require.Equal(t, sent.expectedTop(10), mustTop(t, baseURL, 10).list())

	require.NoError(t, stop(), "a clean shutdown returns no error")
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	redisServer := testenv.MustRedisServer(t)
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	baseURL, _ := mustRun(t, map[string]string{
		"DATABASE_URL": testenv.MustDatabase(t), "REDIS_URL": redisServer.URL(), "PPROF_ADDR": pprofAddr,
	})
	res, err := http.Get("http://" + pprofAddr + "/debug/pprof/cmdline")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	res, err = http.Get(baseURL + "/debug/pprof/cmdline")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusNotFound, res.StatusCode, "never on the API's address")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, io.Discard)
	require.True(t, errors.Is(err, flag.ErrHelp))
	for _, s := range settings {
		require.Contains(t, out.String(), s.name)
	}
	require.Contains(t, out.String(), "claimd reconcile")
	require.Contains(t, out.String(), "claimd worker")
	require.Contains(t, out.String(), "claimd dlq list")
	require.Contains(t, out.String(), "GET  /docs ")
	require.Regexp(t, `\n  GOGC +.*serve and worker set it.*\(default "400"\)\n`, out.String())
	require.Regexp(t, `\n  GOMEMLIMIT +.*serve and worker set it.*\(default "150MiB"\)\n`, out.String())

	none := func(string) string { return "" }
	err = run(context.Background(), []string{"dlq"}, none, io.Discard, io.Discard)
	require.ErrorContains(t, err, "dlq needs list, replay or purge")
	err = run(context.Background(), []string{"dlq", "purge"}, none, io.Discard, io.Discard)
	require.ErrorContains(t, err, "--all")
	err = run(context.Background(), []string{"dlq", "replay", "--body-file", "x.json"}, none, io.Discard, io.Discard)
	require.ErrorContains(t, err, "one --id")

	err = run(context.Background(), []string{"bogus"}, func(string) string { return "" }, io.Discard, io.Discard)
	require.ErrorContains(t, err, `unknown command "bogus"`)
	err = run(context.Background(), nil, func(string) string { return "" }, io.Discard, io.Discard)
	require.Error(t, err)
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		2 * time.Millisecond: "2ms", 0: "0s", time.Hour + time.Second: "1h0m1s"} {
		require.Equal(t, want, shortDuration(d))
	}
	cfg, err := loadConfig(func(string) string { return "" })
	require.NoError(t, err)
	require.Equal(t, ":8000", cfg.HTTPAddr)
	require.Equal(t, "redis://127.0.0.1:6379/0", cfg.RedisURL)
	require.Equal(t, 30*time.Second, cfg.Reconcile.Interval)
	require.Equal(t, 10, cfg.TopProvidersLimit.Rate)
	require.Equal(t, time.Minute, cfg.TopProvidersLimit.Period)
	require.Equal(t, []string{"procedure_code", "npi_format", "service_date_range"}, cfg.Ingest.Rules.Names())
	require.True(t, cfg.MigrateOnStart)
	require.False(t, cfg.AnonymousReads, "claim reads need a key unless the operator says otherwise")
	require.Empty(t, cfg.MetricsAddr)
	require.Equal(t, int64(10_000_000), cfg.Ingest.KeysPerClient)
	require.Equal(t, int64(1_000_000), cfg.Status.PerClient)
	_, detail, ok := cfg.Ingest.Rules[2].Check(claim.Line{ServiceDate: time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC)})
	require.False(t, ok)
	require.Contains(t, detail, "must be from 1900-01-01 to ")
	require.False(t, cfg.Async)
	require.Equal(t, "claims", cfg.Queue.Queue)
	require.Equal(t, 10, cfg.Queue.DeliveryLimit)
	require.Equal(t, "amqp://guest:guest@127.0.0.1:5672/", cfg.Worker.URL)
	require.Equal(t, 256, cfg.Worker.Prefetch)

	env := map[string]string{"VALIDATE_NPI_CHECKSUM": "true", "TOP_PROVIDERS_RATE_LIMIT": "0"}
	cfg, err = loadConfig(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, []string{"procedure_code", "npi_format", "service_date_range", "npi_checksum"}, cfg.Ingest.Rules.Names())
	require.True(t, cfg.TopProvidersLimit.IsZero())

	env = map[string]string{"SERVICE_DATE_EARLIEST": "2020-01-01", "SERVICE_DATE_MAX_AHEAD": "0s", "ALLOW_ANONYMOUS_READS": "true",
		"IDEMPOTENCY_KEYS_PER_CLIENT": "5", "QUEUED_PER_CLIENT": "7", "METRICS_ADDR": "127.0.0.1:9100"}
	cfg, err = loadConfig(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.True(t, cfg.AnonymousReads)
	require.Equal(t, "127.0.0.1:9100", cfg.MetricsAddr)
	require.Equal(t, int64(5), cfg.Ingest.KeysPerClient)
	require.Equal(t, int64(7), cfg.Status.PerClient)
	for date, ok := range map[string]bool{"2019-12-31": false, "2020-01-01": true, time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly): false} {
		d, _ := time.Parse(time.DateOnly, date)
		_, _, passed := cfg.Ingest.Rules[2].Check(claim.Line{ServiceDate: d})
		require.Equal(t, ok, passed, date)
	}

	env = map[string]string{"INGEST_MODE": "async", "RABBITMQ_QUEUE": "q1", "WORKER_PREFETCH": "64"}
	cfg, err = loadConfig(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.True(t, cfg.Async)
	require.Equal(t, "q1", cfg.Worker.Queue)
	require.Equal(t, 64, cfg.Worker.Prefetch)

	env = map[string]string{"RECONCILE_INTERVAL": "soon", "TOP_PROVIDERS_RATE_LIMIT": "lots", "LOG_LEVEL": "loud",
		"INGEST_MODE": "later", "WORKER_PREFETCH": "0", "SERVICE_DATE_EARLIEST": "1/1/1900", "SERVICE_DATE_MAX_AHEAD": "-1h",
		"ALLOW_ANONYMOUS_READS": "maybe", "QUEUED_PER_CLIENT": "-1"}
	_, err = loadConfig(func(k string) string { return env[k] })
	require.ErrorContains(t, err, "SERVICE_DATE_EARLIEST")
	require.ErrorContains(t, err, "SERVICE_DATE_MAX_AHEAD")
	require.ErrorContains(t, err, "ALLOW_ANONYMOUS_READS")
	require.ErrorContains(t, err, "QUEUED_PER_CLIENT")
	require.ErrorContains(t, err, "INGEST_MODE")
	require.ErrorContains(t, err, "WORKER_PREFETCH")
	require.ErrorContains(t, err, "RECONCILE_INTERVAL")
	require.ErrorContains(t, err, "TOP_PROVIDERS_RATE_LIMIT")
	require.ErrorContains(t, err, "LOG_LEVEL")
}

// claimd migrate creates a missing database; claimd reconcile --full rebuilds
// the ranking and says what it did.
func TestMigrateAndReconcileCommands(t *testing.T) {
	t.Parallel()
	redisServer := testenv.MustRedisServer(t)
	dbURL := testenv.MustDatabase(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisServer.URL()}
	getenv := func(k string) string { return env[k] }
	require.NoError(t, run(context.Background(), []string{"migrate"}, getenv, io.Discard, io.Discard), "re-running migrations is a no-op")

	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"reconcile", "--full"}, getenv, &out, io.Discard))
	var res map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &res))
	require.Equal(t, true, res["rebuilt"])
	require.Equal(t, float64(0), res["providers"])

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"reconcile"}, getenv, &out, io.Discard))
	require.NoError(t, json.Unmarshal(out.Bytes(), &res))
	require.Equal(t, false, res["rebuilt"])
}

// SIGTERM lets a request that is being received finish: it is answered, and
// only then does run return, cleanly.
func TestShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	redisServer := testenv.MustRedisServer(t)
	baseURL, stop := mustRun(t, map[string]string{
		"DATABASE_URL": testenv.MustDatabase(t), "REDIS_URL": redisServer.URL(),
		"TOP_PROVIDERS_RATE_LIMIT": "0", "SHUTDOWN_TIMEOUT": "10s",
	})

	body := `{"service_date": "2024-05-01", "submitted_procedure": "D0120", "plan_group": "GRP-1",
		"subscriber": "3730189502", "provider_npi": "1497775538", "provider_fees": 150,
		"allowed_fees": 10, "member_coinsurance": 10, "member_copay": 20}`
	pr, pw := io.Pipe()
	answered := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, baseURL+"/claims", pr)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- nil
			return
		}
		answered <- res
	}()
	_, err := pw.Write([]byte(body[:40])) // the request is now in flight
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("run returned with a request in flight: %v", err)
	default:
	}
	_, err = pw.Write([]byte(body[40:]))
	require.NoError(t, err)
	require.NoError(t, pw.Close())

	res := <-answered
	require.NotNil(t, res, "the in-flight request was answered")
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	require.NoError(t, <-stopped, "then claimd stopped cleanly")
}

func TestTuneGCLeavesOperatorSettingsAlone(t *testing.T) {
	prevPercent, prevLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prevPercent); debug.SetMemoryLimit(prevLimit) })

	tuneGC(func(string) string { return "" })
	require.Equal(t, 400, debug.SetGCPercent(100))
	require.Equal(t, int64(150<<20), debug.SetMemoryLimit(math.MaxInt64))

	tuneGC(func(name string) string { return map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}[name] })
	require.Equal(t, 100, debug.SetGCPercent(100), "GOGC set: left alone")
	require.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "GOMEMLIMIT set: left alone")
}
