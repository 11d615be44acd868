package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/claim-process/claim-process/internal/grafanatest"
	"github.com/claim-process/claim-process/internal/testenv"
)

// dashboardPath is the Grafana dashboard whose queries are checked against a
// real Prometheus.
const dashboardPath = "../../grafana/provisioning/dashboards/claimd.json"

// quietMetrics are the metrics the load of TestPrometheusScrapesDashboard
// does not produce, and why: labelled counters of events it causes none of,
// which have no series until the first one. A dashboard query naming one is
// not asked (cmd/claimd's TestDashboardsQueryExportedMetrics still parses and
// checks it); every other query of the dashboard must return data.
var quietMetrics = map[string]string{
	"claimd_queue_publish_refused_total":   "the broker takes every claim",
	"claimd_queue_dead_lettered_total":     "no claim is dead-lettered",
	"claimd_top_providers_fallbacks_total": "Redis answers every lookup",
	"claimd_claims_deduplicated_total":     "no claim is sent twice",
}

// The Grafana dashboard works against the real thing: Debian's Prometheus
// (2.42, classic histograms only) scrapes claimd serve in async mode and a
// worker every second, as prometheus/prometheus.yml configures it (its job
// names and metrics paths), while a short load runs: 300 claims accepted
// and stored, 30 invalid ones refused, lookups of /top-providers under a
// (generous) rate limit. Then every query of every panel of the dashboard,
// read from its JSON with Grafana's variables expanded ($__rate_interval and
// $__range as 1m, $job and $instance as "All"), is evaluated through
// Prometheus's HTTP API and must return at least one sample that is a number
// (not NaN), except the queries naming a quietMetrics metric; and each
// label_values variable must list values.
func TestPrometheusScrapesDashboard(t *testing.T) {
	bin := prometheusBinary(t)
	begin := time.Now()
	dashboard, err := grafanatest.Load(dashboardPath)
	require.NoError(t, err)

	queue := testenv.MustQueueName(t)
	cfg, _ := asyncSetup(t, testenv.SharedRabbitMQURL(), queue)
	cfg.Env = append(cfg.Env, "TOP_PROVIDERS_RATE_LIMIT=1000/s") // counted in claimd_rate_limit_decisions_total
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
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
		for i := range 30 {
			c := newClaim(rng, fmt.Sprintf("invalid-%d-%02d", time.Now().UnixNano(), i))
			c.Body = bytes.Replace(c.Body, []byte(`"D0120"`), []byte(`"X0120"`), -1) // not a dental procedure code
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
	t.Logf("load: %d claims accepted in %s, %d refused, /top-providers answers %v; %s since the test began",
		len(load.Claims), load.Elapsed.Round(time.Millisecond), len(invalid), lookups, time.Since(begin).Round(time.Millisecond))

	asked := map[string]int{} // by row
	var skipped []string
	for _, target := range dashboard.Targets {
		expr, err := dashboard.Expand(target.Expr, "1m")
		require.NoError(t, err, "%s", target)
		if reason := quietReason(t, expr); reason != "" {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", target, reason))
			continue
		}
		asked[target.Row]++
		samples, err := prom.Query(expr)
		require.NoError(t, err, "%s", target)
		if !slices.ContainsFunc(samples, func(s PromSample) bool { return !math.IsNaN(s.Value) }) {
			t.Errorf("%s returns no data (%d samples, all NaN): %s", target, len(samples), expr)
		}
	}
	for _, target := range dashboard.Targets {
		assert.Positive(t, asked[target.Row], "row %q: some query asked of Prometheus", target.Row)
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
	t.Logf("asked %d dashboard queries (by row: %v); not asked, naming metrics the load does not produce: %s",
		total, asked, strings.Join(skipped, "; "))
	t.Logf("done %s after the test began", time.Since(begin).Round(time.Millisecond))
}

// prometheusBinary finds Debian's prometheus (installed by
// .ci/ensure-services); without it the test skips, except in CI, where it
// fails.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prometheus is not installed (.ci/ensure-services installs Debian's prometheus package): %v", err)
		}
		t.Skipf("prometheus is not installed (%v); `apt-get install prometheus` (or .ci/ensure-services) to run this test", err)
	}
	return bin
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

// quietReason says why expr is not asked: the quietMetrics it names.
func quietReason(t *testing.T, expr string) string {
	t.Helper()
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoError(t, err, expr)
	var reasons []string
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			if reason, quiet := quietMetrics[vs.Name]; quiet {
				reasons = append(reasons, vs.Name+": "+reason)
			}
		}
		return nil
	})
	return strings.Join(reasons, ", ")
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
