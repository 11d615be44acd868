package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// scrape reads a /metrics page.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return b
}

// Every metric claimd serve and claimd worker export passes Prometheus's own
// linter (names, units, counters ending in _total, help present) and our
// rules: one namespace, a help text that says something, seconds and cents
// as units, and no label that could carry an NPI, a plan or a subscriber.
func TestMetricsAreLintClean(t *testing.T) {
	t.Parallel()
	cd := mustStartAsyncWithTraffic(t)

	urls := cd.metricsURLs()
	for name, url := range urls {
		page := scrape(t, url)
		t.Run(name, func(t *testing.T) {
			problems, err := promlint.New(bytes.NewReader(page)).Lint()
			require.NoError(t, err)
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			families, err := parser.TextToMetricFamilies(bytes.NewReader(page))
			require.NoError(t, err)
			var ours []string
			for fname, f := range families {
				if !strings.HasPrefix(fname, "claimd_") {
					require.Regexp(t, `^(go|process|promhttp)_`, fname, "claimd's own metrics are under claimd_")
					continue
				}
				ours = append(ours, fname)
				checkFamily(t, f)
			}
			doc, err := os.ReadFile("../../docs/metrics.md")
			require.NoError(t, err)
			for _, n := range ours {
				require.Contains(t, string(doc), "`"+n+"`", "docs/metrics.md documents every metric")
			}
			sort.Strings(ours)
			require.Greater(t, len(ours), 15, "the scrape holds claimd's metrics: %v", ours)
			for _, want := range []string{"claimd_build_info", "claimd_dependency_up", "claimd_pgxpool_connections",
				"claimd_redis_pool_connections", "claimd_rabbitmq_connected"} {
				require.Contains(t, ours, want)
			}
			// Sampled every 5 s: the first sample may predate the broker connection.
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				res, err := http.Get(urls[name])
				require.NoError(c, err)
				defer res.Body.Close()
				families, err := parser.TextToMetricFamilies(res.Body)
				require.NoError(c, err)
				up := map[string]float64{}
				for _, m := range families["claimd_dependency_up"].GetMetric() {
					up[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				}
				assert.Equal(c, map[string]float64{"postgres": 1, "redis": 1, "rabbitmq": 1}, up)
			}, 12*time.Second, 200*time.Millisecond, "claimd_dependency_up says all three answer")
		})
	}
	cd.requireStop(t)
}

// asyncClaimd is claimd serve in async mode and a claimd worker, run
// in-process, each with its /metrics.
type asyncClaimd struct {
	serveURL, workerURL string // base URLs
	stop, stopWorker    func() error
}

// metricsURLs are the /metrics pages of serve and worker, by name.
func (cd asyncClaimd) metricsURLs() map[string]string {
	return map[string]string{"serve": cd.serveURL + "/metrics", "worker": cd.workerURL + "/metrics"}
}

// requireStop stops the worker and then serve, each of which must end cleanly.
func (cd asyncClaimd) requireStop(t *testing.T) {
	t.Helper()
	require.NoError(t, cd.stopWorker(), "the worker stops cleanly")
	require.NoError(t, cd.stop())
}

// mustStartAsyncWithTraffic starts claimd serve in async mode and a worker
// on a fresh database, a redis-server of the test's own and a queue of its
// own on the shared RabbitMQ, and gives them traffic so that labelled
// metrics have children: a queued claim that the worker stores, a refused
// one, lookups. Both are stopped when the test ends, if it did not.
func mustStartAsyncWithTraffic(t *testing.T) asyncClaimd {
	t.Helper()
	redisServer := testenv.MustRedisServer(t)
	workerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	exchange, eventsQueue := testenv.MustEventsExchange(t)
	env := map[string]string{
		"EVENTS_EXCHANGE":          exchange,
		"EVENTS_QUEUE":             eventsQueue,
		"DATABASE_URL":             testenv.MustDatabase(t),
		"REDIS_URL":                redisServer.URL(),
		"RECONCILE_INTERVAL":       "1s",
		"TOP_PROVIDERS_RATE_LIMIT": "1000/s", // on, so its decisions are exported too
		"INGEST_MODE":              "async",
		"RABBITMQ_QUEUE":           testenv.MustQueueName(t),
		"WORKER_ADDR":              workerAddr,
	}
	baseURL, stop := mustRun(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	workerLog := &syncBuffer{}
	go func() {
		workerDone <- run(ctx, []string{"worker"}, func(k string) string { return env[k] }, io.Discard, workerLog)
	}()
	stopWorker := sync.OnceValue(func() error { cancel(); return <-workerDone })
	t.Cleanup(func() {
		_ = stopWorker()
		if t.Failed() {
			t.Logf("worker logs:\n%s", workerLog.String())
		}
	})

	require.Eventually(t, func() bool {
		res, err := http.Post(baseURL+"/claims", "application/json", strings.NewReader(lintClaim))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusAccepted
	}, 15*time.Second, 50*time.Millisecond, "async claimd accepts once connected to RabbitMQ")
	res, err := http.Post(baseURL+"/claims", "application/json", strings.NewReader(strings.Replace(lintClaim, "D0180", "X0180", 1)))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	for range 3 {
		res, err := http.Get(baseURL + "/top-providers")
		require.NoError(t, err)
		res.Body.Close()
	}
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + workerAddr + "/metrics")
		if err != nil {
			return false // not listening yet
		}
		defer res.Body.Close()
		page, _ := io.ReadAll(res.Body)
		return bytes.Contains(page, []byte("claimd_queue_acked_total 1"))
	}, 15*time.Second, 50*time.Millisecond, "the worker stores the claim")
	workerPage := string(scrape(t, "http://"+workerAddr+"/metrics"))
	require.Contains(t, workerPage, `claimd_claims_ingested_total{mode="async"} 1`)
	require.Contains(t, workerPage, `claimd_claim_submissions_total{mode="async",outcome="stored"} 1`)
	return asyncClaimd{serveURL: baseURL, workerURL: "http://" + workerAddr, stop: stop, stopWorker: stopWorker}
}

// forbiddenLabel matches label names that would put PHI or unbounded
// business values into metrics.
var forbiddenLabel = regexp.MustCompile(`(?i)npi|provider|subscriber|plan|group|claim_id|member`)

func checkFamily(t *testing.T, f *dto.MetricFamily) {
	t.Helper()
	name, help := f.GetName(), f.GetHelp()
	require.GreaterOrEqual(t, len(help), 20, "%s: a help text that says what it counts", name)
	require.True(t, strings.HasSuffix(help, ".") || strings.HasSuffix(help, ")"), "%s: help is a sentence: %q", name, help)
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		require.True(t, strings.HasSuffix(name, "_total"), "%s: a counter ends in _total", name)
	case dto.MetricType_HISTOGRAM:
		require.Regexp(t, `_(seconds|claims|bytes)$`, name, "%s: a histogram names its unit", name)
	}
	if strings.Contains(name, "fee") || strings.Contains(name, "drift") {
		require.Contains(t, name, "cents", "%s: money is in cents", name)
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			require.NotRegexp(t, forbiddenLabel, l.GetName(), "%s: label %q", name, l.GetName())
		}
	}
}

const lintClaim = `{"claim_id": "lint-1", "lines": [{"service_date": "2025-01-15", "submitted_procedure": "D0180",
  "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": "1497775530",
  "provider_fees": 100, "allowed_fees": 10, "member_coinsurance": 0, "member_copay": 0}]}`
