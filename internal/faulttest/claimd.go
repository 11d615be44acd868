package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// ClaimdBinary is the path of the claimd binary the suite runs; TestMain
// builds it once.
var ClaimdBinary string

// ClaimdConfig is what a claimd process is pointed at.
type ClaimdConfig struct {
	DatabaseURL string
	RedisURL    string
	KeyPrefix   string // REDIS_KEY_PREFIX; "" keeps the default "claimd:"

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
	env := append(os.Environ(),
		"DATABASE_URL="+cfg.DatabaseURL,
		"REDIS_URL="+cfg.RedisURL,
		"RECONCILE_INTERVAL=1s",
		"TOP_PROVIDERS_RATE_LIMIT=0",
		"LOG_LEVEL=info",
		"SHUTDOWN_TIMEOUT=5s",
		"INGEST_MODE=sync",
		"ALLOW_ANONYMOUS_READS=true", // the verification reads claims back, as make run allows
	)
	if cfg.KeyPrefix != "" {
		env = append(env, "REDIS_KEY_PREFIX="+cfg.KeyPrefix)
	}
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
	t       testing.TB
	name    string
	command string // serve or worker
	async   bool   // wait at start until it is connected to the broker
	addr    string
	env     []string
	logPath string
	proc    *process // nil when not started, or after Kill or Terminate
	starts  int      // how often Start started it
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
	c := &Claimd{
		t:       t,
		name:    name,
		command: command,
		async:   cfg.Async,
		addr:    "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		logPath: filepath.Join(t.TempDir(), name+".log"),
	}
	c.env = append(cfg.environ(), addrVar+"="+c.addr)
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			dumpFile(t, "claimd "+name+" log", c.logPath)
		}
	})
	c.Start()
	return c
}

// BaseURL is the service's http:// base URL.
func (c *Claimd) BaseURL() string { return "http://" + c.addr }

// Start starts the process (again) and waits until /healthz answers 200.
// Output of every run is appended to the same log file.
func (c *Claimd) Start() {
	c.t.Helper()
	require.Nil(c.t, c.proc, "claimd %s is already running", c.name)
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(c.t, err)
	fmt.Fprintf(logFile, "=== faulttest: starting claimd %s %s at %s\n", c.command, c.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(ClaimdBinary, c.command)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc, err := spawn(cmd)
	_ = logFile.Close() // the child has its own
	require.NoError(c.t, err)
	c.proc = proc
	c.starts++

	client := &http.Client{Timeout: time.Second}
	waitFor(c.t, 30*time.Second, "claimd "+c.name+" /healthz", func() error {
		if !proc.Running() {
			return errStop{fmt.Errorf("claimd %s exited during start: %v", c.name, proc.err)}
		}
		resp, err := client.Get(c.BaseURL() + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz answered %d", resp.StatusCode)
		}
		return nil
	})
	if c.async {
		waitFor(c.t, 30*time.Second, "claimd "+c.name+" connected to the broker", c.connected)
	}
}

// connected checks /readyz: a worker answers 200 once it consumes; serve
// answers 200 with "rabbitmq":"ok" once its publisher is connected.
func (c *Claimd) connected() error {
	if !c.proc.Running() {
		return errStop{fmt.Errorf("claimd %s exited during start: %v", c.name, c.proc.err)}
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(c.BaseURL() + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ready struct {
		RabbitMQ string `json:"rabbitmq"`
	}
	body, _ := readAllString(resp)
	if err := json.Unmarshal([]byte(body), &ready); err != nil || resp.StatusCode != http.StatusOK || ready.RabbitMQ != "ok" {
		return fmt.Errorf("/readyz answered %d %s", resp.StatusCode, snippet([]byte(body)))
	}
	return nil
}

// Pid is the process id of the running process (0 when it is not running).
func (c *Claimd) Pid() int {
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid()
}

// Starts is how often the process was started: 1 unless it was restarted.
func (c *Claimd) Starts() int { return c.starts }

// Name is the name the process was started with.
func (c *Claimd) Name() string { return c.name }

// Running reports whether the process is alive.
func (c *Claimd) Running() bool { return c.proc != nil && c.proc.Running() }

// Kill sends SIGKILL, the crash no code can react to, and waits for the exit.
func (c *Claimd) Kill() {
	if c.proc == nil {
		return
	}
	c.proc.Kill()
	c.proc = nil
}

// Terminate sends SIGTERM and requires a graceful exit with status 0 within
// SHUTDOWN_TIMEOUT plus a margin.
func (c *Claimd) Terminate() {
	c.t.Helper()
	require.NotNil(c.t, c.proc, "claimd %s is not running", c.name)
	proc := c.proc
	c.proc = nil
	if !proc.Running() {
		c.t.Fatalf("claimd %s had already exited: %v", c.name, proc.err)
	}
	if !proc.Terminate(syscall.SIGTERM, 15*time.Second) {
		c.t.Fatalf("claimd %s did not exit within 15s of SIGTERM; killed it", c.name)
	}
	require.NoError(c.t, proc.err, "claimd %s must exit 0 after SIGTERM", c.name)
}

// Restart starts the process again after Kill or Terminate.
func (c *Claimd) Restart() {
	c.t.Helper()
	c.Kill()
	c.Start()
}

// Metric returns a sample of the /metrics exposition and whether it exists.
// A sample given with labels (`name{a="b"}`) must match exactly; a bare name
// sums every label set of that metric.
func (c *Claimd) Metric(sample string) (float64, bool) {
	c.t.Helper()
	v, found, err := scrapeMetric(c.BaseURL(), sample)
	require.NoError(c.t, err)
	return v, found
}

// scrapeMetric reads one sample (see Claimd.Metric) from base's /metrics.
func scrapeMetric(base, sample string) (float64, bool, error) {
	var metric string
	if name, _, labelled := strings.Cut(sample, "{"); labelled {
		metric = name
	} else {
		metric = sample
	}
	samples, err := scrapeSamples(base, metric)
	if err != nil {
		return 0, false, err
	}
	if v, ok := samples[sample]; ok {
		return v, true, nil
	}
	if strings.Contains(sample, "{") {
		return 0, false, nil
	}
	var sum float64
	for _, v := range samples {
		sum += v
	}
	return sum, len(samples) > 0, nil
}

// scrapeSamples reads every sample of one metric from base's /metrics, by
// its full name with labels (`name{a="b"}`), or the bare name if it has none.
func scrapeSamples(base, metric string) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	text, err := readAllString(resp)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || (name != metric && !strings.HasPrefix(name, metric+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		out[name] = v
	}
	return out, nil
}

// LogMetrics logs what claimd itself counted, for the scenario's report: how
// often it failed to write Redis, rebuilt the ranking, deduplicated a claim,
// and in async mode what it published, consumed, acked and was given again.
func (c *Claimd) LogMetrics() {
	c.t.Helper()
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
		samples, err := scrapeSamples(c.BaseURL(), name)
		require.NoError(c.t, err)
		for _, sample := range keys(samples) {
			// Counters by reason are shown by reason, and only when not 0.
			if v := samples[sample]; v != 0 || !strings.Contains(sample, "reason=") {
				parts = append(parts, fmt.Sprintf("%s=%g", strings.TrimPrefix(sample, "claimd_"), v))
			}
		}
	}
	c.t.Logf("claimd %s %s metrics (since its last start): %s", c.command, c.name, strings.Join(parts, " "))
}

// RunClaimd runs a claimd command that exits by itself (claimd dlq list,
// ...) with cfg's settings and returns its standard output; a failure
// (exit status other than 0) is returned with its standard error.
func RunClaimd(t testing.TB, cfg ClaimdConfig, args ...string) (string, error) {
	t.Helper()
	require.NotEmpty(t, ClaimdBinary, "TestMain did not build claimd")
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ClaimdBinary, args...)
	cmd.Env = cfg.environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("claimd %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// errStop makes waitFor give up at once instead of polling on.
type errStop struct{ error }

// waitFor polls check every 50ms until it returns nil, failing the test with
// the last error after timeout, or at once with an errStop.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	if err := poll(timeout, check); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll calls check every 50ms until it returns nil. It returns the error
// inside an errStop at once, or the last error after timeout.
func poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
