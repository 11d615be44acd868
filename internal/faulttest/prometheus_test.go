package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/claim-process/claim-process/internal/grafanatest"
	"github.com/claim-process/claim-process/internal/testenv"
)

// dashboardPath is the Grafana dashboard whose queries are checked against a
// real Prometheus.
const dashboardPath = "../../grafana/provisioning/dashboards/claimd.json"

// The Grafana dashboard works against the real thing: Debian's Prometheus
// (2.42, classic histograms only) scrapes claimd serve in async mode, with
// events to payments on (an exchange and queue of the test's own), and a
// worker every second, as prometheus/prometheus.yml configures it (its job
// names and metrics paths), while a short load runs: 300 claims accepted
// and stored, each one's claim.stored event published, 30 invalid ones
// refused, lookups of /top-providers under a (generous) rate limit. Then
// every query of every panel of the dashboard,
// read from its JSON with Grafana's variables expanded ($__rate_interval and
// $__range as 1m, $job and $instance as "All"), is evaluated through
// Prometheus's HTTP API and must return at least one sample that is a number
// (not NaN) — counters of events the load causes none of (dead letters,
// fallbacks) are exported at 0 from the start, so they answer too — and each
// label_values variable must list values.
func TestPrometheusScrapesDashboard(t *testing.T) {
	bin := testenv.Tool(t, "prometheus", "Debian package prometheus")
	begin := time.Now()
	dashboard, err := grafanatest.Load(dashboardPath)
	require.NoError(t, err)

	queue := testenv.MustQueueName(t)
	cfg, _ := asyncSetup(t, testenv.SharedRabbitMQURL(), queue)
	cfg.Env = append(cfg.Env, "TOP_PROVIDERS_RATE_LIMIT=1000/s") // counted in claimd_rate_limit_decisions_total
	// Events on: the outbox and relay metrics exist only while serve relays.
	exchange, eventsQueue := testenv.MustEventsExchange(t)
	cfg.Env = append(cfg.Env, "EVENTS_EXCHANGE="+exchange, "EVENTS_QUEUE="+eventsQueue)
	serve := StartClaimd(t, "serve", cfg)
	worker := StartWorker(t, "worker", cfg)
	jobs := scrapeJobs(t, map[string]*Claimd{"claimd": serve, "claimd-worker": worker})
	prom := StartPrometheus(t, bin, jobs)
	waitQuery(t, prom, "both claimd targets up", `count(up == 1)`, float64(len(jobs)))

	// The load: about three seconds of claims, invalid claims and lookups.
	load := NewLoad(t, LoadConfig{Claims: 300, Clients: 8, Rate: 100, KeyShare: 0.3})
	load.Start(serve.BaseURL())
	var invalid []*Claim
	lookups := map[int]int{}
	var wg sync.WaitGroup
	wg.Go(func() {
		sender := NewSender(serve.BaseURL())
		gen := newGenerator(uint64(time.Now().UnixNano()))
		for i := range 30 {
			c := newClaim(gen, fmt.Sprintf("invalid-%d-%02d", time.Now().UnixNano(), i))
			// not a dental procedure code
			c.Body = bytes.ReplaceAll(c.Body, []byte(`"submitted_procedure":"D`), []byte(`"submitted_procedure":"X`))
			invalid = append(invalid, c)
			sender.Send(context.Background(), c, 0)
			time.Sleep(100 * time.Millisecond)
		}
	})
	wg.Go(func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for !load.Done() {
			if resp, err := client.Get(serve.BaseURL() + "/top-providers?limit=10"); err == nil {
				resp.Body.Close()
				lookups[resp.StatusCode]++
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	load.Wait()
	wg.Wait()
	for _, c := range invalid {
		status, body := c.Refusal()
		require.Equal(t, http.StatusUnprocessableEntity, status, "invalid claim %s: %s", c.ExternalID, body)
	}
	requireAllAccepted(t, load)
	require.Positive(t, lookups[http.StatusOK], "/top-providers answered: %v", lookups)
	// Prometheus has scraped the worker after it stored every claim.
	waitQuery(t, prom, "every claim stored, as scraped", `sum(claimd_claims_ingested_total)`, float64(len(load.Claims)))
	// ... and serve has relayed their events (at least once: a batch may be
	// published again after a failure).
	waitQuery(t, prom, "every claim's event published, as scraped",
		fmt.Sprintf(`sum(claimd_events_published_total{type="claim.stored"}) >= bool %d`, len(load.Claims)), 1)
	t.Logf("load: %d claims accepted in %s, %d refused, /top-providers answers %v; %s since the test began",
		len(load.Claims), load.Elapsed.Round(time.Millisecond), len(invalid), lookups, time.Since(begin).Round(time.Millisecond))

	asked := map[string]int{} // by row
	for _, target := range dashboard.Targets {
		expr, err := dashboard.Expand(target.Expr, "1m")
		require.NoError(t, err, "%s", target)
		asked[target.Row]++
		samples, err := prom.Query(expr)
		require.NoError(t, err, "%s", target)
		if !slices.ContainsFunc(samples, func(s PromSample) bool { return !math.IsNaN(s.Value) }) {
			t.Errorf("%s returns no data (%d samples, all NaN): %s", target, len(samples), expr)
		}
	}
	for _, v := range dashboard.Variables {
		q, err := grafanatest.ParseVariableQuery(v.Query)
		if err != nil || q.Label == "" || q.Expr == "" {
			continue // label_values only; cmd/claimd's test checks the others
		}
		match, err := dashboard.Expand(q.Expr, "1m")
		require.NoError(t, err)
		values, err := prom.LabelValues(q.Label, match)
		require.NoError(t, err)
		assert.NotEmpty(t, values, "variable %s: %s lists no values", v.Name, v.Query)
		if q.Label == "job" {
			var names []string
			for _, j := range jobs {
				names = append(names, j.Name)
			}
			assert.ElementsMatch(t, names, values, "variable %s lists every job", v.Name)
		}
	}
	total := 0
	for _, n := range asked {
		total += n
	}
	t.Logf("asked %d dashboard queries (by row: %v)", total, asked)
	t.Logf("done %s after the test began", time.Since(begin).Round(time.Millisecond))
}

// A port FreePort found free can be taken before Prometheus binds it:
// Prometheus then exits with "address already in use", and StartPrometheus
// starts it again on another port.
func TestPrometheusRetriesTakenPort(t *testing.T) {
	bin := testenv.Tool(t, "prometheus", "Debian package prometheus")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	ports := 0
	freePort := func(t testing.TB) int {
		ports++
		if ports == 1 {
			return taken.Addr().(*net.TCPAddr).Port
		}
		return testenv.FreePort(t)
	}
	prom := startPrometheus(t, bin, nil, freePort)
	require.Equal(t, 2, ports, "started again on a second port")
	require.NotEqual(t, "http://"+taken.Addr().String(), prom.URL())
	samples, err := prom.Query("vector(1)")
	require.NoError(t, err)
	require.Equal(t, []PromSample{{Metric: map[string]string{}, Value: 1}}, samples)
}

// scrapeJobs reads the scrape jobs of prometheus/prometheus.yml and points
// each at the process started for its job name: the same job names and
// metrics paths as the real configuration, the test's own targets.
func scrapeJobs(t *testing.T, targets map[string]*Claimd) []ScrapeJob {
	t.Helper()
	raw, err := os.ReadFile("../../prometheus/prometheus.yml")
	require.NoError(t, err)
	var cfg struct {
		ScrapeConfigs []struct {
			JobName     string `yaml:"job_name"`
			MetricsPath string `yaml:"metrics_path"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	var jobs []ScrapeJob
	for _, sc := range cfg.ScrapeConfigs {
		cd, ok := targets[sc.JobName]
		require.True(t, ok, "prometheus.yml scrapes job %q, which this test does not start", sc.JobName)
		jobs = append(jobs, ScrapeJob{Name: sc.JobName, MetricsPath: sc.MetricsPath,
			Targets: []string{strings.TrimPrefix(cd.BaseURL(), "http://")}})
	}
	require.Len(t, jobs, len(targets), "prometheus.yml scrapes serve and worker")
	return jobs
}

// waitQuery waits until expr evaluates to one sample of value want.
func waitQuery(t *testing.T, prom *PrometheusServer, what, expr string, want float64) {
	t.Helper()
	waitFor(t, 30*time.Second, what+" ("+expr+")", func() error {
		samples, err := prom.Query(expr)
		if err != nil {
			return err
		}
		if len(samples) != 1 || samples[0].Value != want {
			return fmt.Errorf("%s is %v, want %g", expr, samples, want)
		}
		return nil
	})
}
