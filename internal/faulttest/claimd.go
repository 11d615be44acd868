package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/testenv"
)

// ClaimdBinary is the path of the claimd binary the suite runs; TestMain
// builds it once.
var ClaimdBinary string

// ClaimdConfig is what a claimd process is pointed at.
type ClaimdConfig struct {
	DatabaseURL string
	RedisURL    string
	KeyPrefix   string // REDIS_KEY_PREFIX; "" keeps the default, rank.DefaultPrefix

	// Async mode (INGEST_MODE=async for serve; claimd worker and claimd dlq
	// read the same settings). Async false runs serve synchronously and
	// ignores the rest.
	Async         bool
	RabbitURL     string   // RABBITMQ_URL
	Queue         string   // RABBITMQ_QUEUE; dead letters go to Queue+".dead"
	DeliveryLimit int      // QUEUE_DELIVERY_LIMIT; 0 keeps claimd's default (5)
	Env           []string // more NAME=value settings, after the suite's own
}

// environ is the process environment for cfg: the test's own, then the
// suite's settings, which win. Every setting of async mode is named so that
// nothing in the caller's environment (INGEST_MODE, RABBITMQ_*) can leak in.
func (cfg ClaimdConfig) environ() []string {
	env := loadkit.Environ(cfg.DatabaseURL, cfg.RedisURL, cfg.KeyPrefix,
		"RECONCILE_INTERVAL=1s",
		"LOG_LEVEL=info",
		"SHUTDOWN_TIMEOUT=5s",
		"INGEST_MODE=sync",
	)
	if cfg.Async {
		env = append(env, "INGEST_MODE=async", "RABBITMQ_URL="+cfg.RabbitURL, "RABBITMQ_QUEUE="+cfg.Queue)
		if cfg.DeliveryLimit > 0 {
			env = append(env, "QUEUE_DELIVERY_LIMIT="+strconv.Itoa(cfg.DeliveryLimit))
		}
	}
	return append(env, cfg.Env...)
}

// Claimd is one claimd process: "claimd serve" (StartClaimd) or "claimd
// worker" (StartWorker), whose address is that of its /metrics, /healthz
// and /readyz. It keeps its address across restarts, so clients and the
// other instances never need to be told it moved.
type Claimd struct {
	t     testing.TB
	async bool // wait at start until it is connected to the broker
	kd    *loadkit.Claimd
}

// StartClaimd starts "claimd serve" and waits until /healthz answers, and in
// async mode until /readyz says it is connected to the broker. It is killed
// when the test ends, and its log is printed if the test failed.
func StartClaimd(t testing.TB, name string, cfg ClaimdConfig) *Claimd {
	t.Helper()
	return startProcess(t, name, "serve", "HTTP_ADDR", cfg)
}

// StartWorker starts "claimd worker" (cfg must be the async one of the
// serve instances) and waits until its /readyz says it is consuming. It is
// killed when the test ends, and its log is printed if the test failed.
func StartWorker(t testing.TB, name string, cfg ClaimdConfig) *Claimd {
	t.Helper()
	require.True(t, cfg.Async, "a worker needs the async settings")
	return startProcess(t, name, "worker", "WORKER_ADDR", cfg)
}

func startProcess(t testing.TB, name, command, addrVar string, cfg ClaimdConfig) *Claimd {
	t.Helper()
	require.NotEmpty(t, ClaimdBinary, "TestMain did not build claimd")
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	c := &Claimd{t: t, async: cfg.Async, kd: &loadkit.Claimd{
		Binary:  ClaimdBinary,
		Command: command,
		Name:    name,
		Addr:    addr,
		Env:     append(cfg.environ(), addrVar+"="+addr),
		LogPath: filepath.Join(t.TempDir(), name+".log"),
	}}
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			dumpFile(t, "claimd "+name+" log", c.kd.LogPath)
		}
	})
	c.Start()
	return c
}

// BaseURL is the service's http:// base URL.
func (c *Claimd) BaseURL() string { return c.kd.URL() }

// Start starts the process (again) and waits until /healthz answers 200,
// and in async mode until /readyz says it is connected to the broker.
// Output of every run is appended to the same log file.
func (c *Claimd) Start() {
	c.t.Helper()
	require.NoError(c.t, c.kd.Start())
	ctx := context.Background() // WaitReady bounds each wait
	require.NoError(c.t, c.kd.WaitReady(ctx, 30*time.Second, "/healthz", loadkit.StatusOK))
	if c.async {
		require.NoError(c.t, c.kd.WaitReady(ctx, 30*time.Second, "/readyz", connected), "connected to the broker")
	}
}

// connected checks a /readyz answer: a worker answers 200 once it consumes;
// serve answers 200 with "rabbitmq":"ok" once its publisher is connected.
func connected(status int, body []byte) error {
	var ready struct {
		RabbitMQ string `json:"rabbitmq"`
	}
	if err := json.Unmarshal(body, &ready); err != nil || status != http.StatusOK || ready.RabbitMQ != "ok" {
		return fmt.Errorf("/readyz answered %d %s", status, loadkit.Snippet(body))
	}
	return nil
}

// Pid is the process id of the running process (0 when it is not running).
func (c *Claimd) Pid() int { return c.kd.Pid() }

// Starts is how often the process was started: 1 unless it was restarted.
func (c *Claimd) Starts() int { return c.kd.Starts() }

// Name is the name the process was started with.
func (c *Claimd) Name() string { return c.kd.Name }

// Running reports whether the process is alive.
func (c *Claimd) Running() bool { return c.kd.Running() }

// Kill sends SIGKILL, the crash no code can react to, and waits for the exit.
func (c *Claimd) Kill() { c.kd.Kill() }

// Terminate sends SIGTERM and requires a graceful exit with status 0 within
// SHUTDOWN_TIMEOUT plus a margin.
func (c *Claimd) Terminate() {
	c.t.Helper()
	require.True(c.t, c.kd.Process() != nil, "claimd %s is not running", c.kd.Name)
	if !c.kd.Running() {
		err := c.kd.Process().Err()
		c.kd.Kill() // forgets the exited process
		c.t.Fatalf("claimd %s had already exited: %v", c.kd.Name, err)
	}
	child, exited := c.kd.Terminate(15 * time.Second)
	if !exited {
		c.t.Fatalf("claimd %s did not exit within 15s of SIGTERM; killed it", c.kd.Name)
	}
	require.NoError(c.t, child.Err(), "claimd %s must exit 0 after SIGTERM", c.kd.Name)
}

// Restart starts the process again after Kill or Terminate.
func (c *Claimd) Restart() {
	c.t.Helper()
	c.Kill()
	c.Start()
}

// Metric returns a sample of the /metrics exposition and whether it exists
// (see loadkit.Metrics.Sample).
func (c *Claimd) Metric(sample string) (float64, bool) {
	c.t.Helper()
	v, found, err := loadkit.ScrapeSample(context.Background(), c.BaseURL(), sample)
	require.NoError(c.t, err)
	return v, found
}

// LogMetrics logs what claimd itself counted, for the scenario's report: how
// often it failed to write Redis, rebuilt the ranking, deduplicated a claim,
// and in async mode what it published, consumed, acked and was given again.
func (c *Claimd) LogMetrics() {
	c.t.Helper()
	m, err := loadkit.Scrape(context.Background(), c.BaseURL())
	require.NoError(c.t, err)
	var parts []string
	for _, name := range []string{
		"claimd_claims_ingested_total", "claimd_claims_deduplicated_total",
		"claimd_redis_update_failures_total", "claimd_redis_update_retries_total",
		"claimd_reconcile_rebuilds_total", "claimd_reconcile_repaired_providers_total",
		"claimd_ranking_drift_repaired_cents_total", "claimd_ranking_drift_cents",
		// async mode: serve publishes, workers consume
		"claimd_queue_confirmed_total", "claimd_queue_publish_refused_total", "claimd_rabbitmq_connects_total",
		"claimd_queue_consumed_total", "claimd_queue_acked_total", "claimd_queue_redelivered_total",
		"claimd_queue_requeued_total", "claimd_queue_dead_lettered_total",
	} {
		samples := m.Samples(name)
		for _, sample := range slices.Sorted(maps.Keys(samples)) {
			// Counters by reason are shown by reason, and only when not 0.
			if v := samples[sample]; v != 0 || !strings.Contains(sample, "reason=") {
				parts = append(parts, fmt.Sprintf("%s=%g", strings.TrimPrefix(sample, "claimd_"), v))
			}
		}
	}
	c.t.Logf("claimd %s %s metrics (since its last start): %s", c.kd.Command, c.kd.Name, strings.Join(parts, " "))
}

// RunClaimd runs a claimd command that exits by itself (claimd dlq list,
// ...) with cfg's settings and returns its standard output; a failure
// (exit status other than 0) is returned with its standard error.
func RunClaimd(t testing.TB, cfg ClaimdConfig, args ...string) (string, error) {
	t.Helper()
	require.NotEmpty(t, ClaimdBinary, "TestMain did not build claimd")
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	out, err := loadkit.RunClaimd(ctx, ClaimdBinary, cfg.environ(), args...)
	return string(out), err
}

// waitFor polls check every 50ms until it returns nil, failing the test with
// the last error after timeout, or at once with an error given to
// proc.Stop.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	if err := poll(timeout, check); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll is proc.Poll every 50ms, with no context of its own.
func poll(timeout time.Duration, check func() error) error {
	return proc.Poll(context.Background(), 50*time.Millisecond, timeout, check)
}

// dumpFile prints the end of a log file through t.Log.
func dumpFile(t testing.TB, title, path string) {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", title, err)
		return
	}
	t.Logf("----- %s (%s) -----\n%s\n----- end of %s -----", title, path, tail(string(text), 64<<10), title)
}

// tail returns at most the last n bytes of s, cut at a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// withTimeout is context.WithTimeout on the background context.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
