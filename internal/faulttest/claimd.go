package faulttest

import (
	"context"
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
}

// Claimd is one claimd serve process. It keeps its address across restarts,
// so clients and the other instances never need to be told it moved.
type Claimd struct {
	t       testing.TB
	name    string
	addr    string
	env     []string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited; waitErr is then set
	waitErr error
}

// StartClaimd starts "claimd serve" and waits until /healthz answers. It is
// killed when the test ends, and its log is printed if the test failed.
func StartClaimd(t testing.TB, name string, cfg ClaimdConfig) *Claimd {
	t.Helper()
	require.NotEmpty(t, ClaimdBinary, "TestMain did not build claimd")
	c := &Claimd{
		t:       t,
		name:    name,
		addr:    "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		logPath: filepath.Join(t.TempDir(), name+".log"),
	}
	c.env = append(os.Environ(),
		"HTTP_ADDR="+c.addr,
		"DATABASE_URL="+cfg.DatabaseURL,
		"REDIS_URL="+cfg.RedisURL,
		"RECONCILE_INTERVAL=1s",
		"TOP_PROVIDERS_RATE_LIMIT=0",
		"LOG_LEVEL=info",
		"SHUTDOWN_TIMEOUT=5s",
	)
	if cfg.KeyPrefix != "" {
		c.env = append(c.env, "REDIS_KEY_PREFIX="+cfg.KeyPrefix)
	}
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
	require.Nil(c.t, c.cmd, "claimd %s is already running", c.name)
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(c.t, err)
	fmt.Fprintf(logFile, "=== faulttest: starting claimd %s at %s\n", c.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(ClaimdBinary, "serve")
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	require.NoError(c.t, cmd.Start())
	c.cmd, c.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		c.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(exited)
	}(c.exited)

	client := &http.Client{Timeout: time.Second}
	waitFor(c.t, 30*time.Second, "claimd "+c.name+" /healthz", func() error {
		select {
		case <-c.exited:
			return errStop{fmt.Errorf("claimd %s exited during start: %v", c.name, c.waitErr)}
		default:
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
}

// Running reports whether the process is alive.
func (c *Claimd) Running() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL, the crash no code can react to, and waits for the exit.
func (c *Claimd) Kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	c.cmd = nil
}

// Terminate sends SIGTERM and requires a graceful exit with status 0 within
// SHUTDOWN_TIMEOUT plus a margin.
func (c *Claimd) Terminate() {
	c.t.Helper()
	require.NotNil(c.t, c.cmd, "claimd %s is not running", c.name)
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.Kill()
		c.t.Fatalf("claimd %s did not exit within 15s of SIGTERM", c.name)
	}
	err := c.waitErr
	c.cmd = nil
	require.NoError(c.t, err, "claimd %s must exit 0 after SIGTERM", c.name)
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
	resp, err := http.Get(c.BaseURL() + "/metrics")
	require.NoError(c.t, err)
	defer resp.Body.Close()
	text, err := readAllString(resp)
	require.NoError(c.t, err)
	var (
		sum   float64
		found bool
	)
	for _, line := range strings.Split(text, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if name != sample && (strings.Contains(sample, "{") || !strings.HasPrefix(name, sample+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		require.NoError(c.t, err, "metric line %q", line)
		sum, found = sum+v, true
	}
	return sum, found
}

// LogMetrics logs what claimd itself counted, for the scenario's report: how
// often it failed to write Redis, rebuilt the ranking, deduplicated a claim.
func (c *Claimd) LogMetrics() {
	c.t.Helper()
	var parts []string
	for _, name := range []string{
		"claimd_claims_ingested_total", "claimd_claims_deduplicated_total",
		"claimd_redis_update_failures_total", "claimd_redis_update_retries_total",
		"claimd_reconcile_rebuilds_total", "claimd_reconcile_repaired_providers_total",
		"claimd_ranking_drift_repaired_cents_total", "claimd_ranking_drift_cents",
	} {
		if v, ok := c.Metric(name); ok {
			parts = append(parts, fmt.Sprintf("%s=%g", strings.TrimPrefix(name, "claimd_"), v))
		}
	}
	c.t.Logf("claimd %s metrics (since its last start): %s", c.name, strings.Join(parts, " "))
}

// errStop makes waitFor give up at once instead of polling on.
type errStop struct{ error }

// waitFor polls check every 50ms until it returns nil, failing the test with
// the last error after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		var stop errStop
		if errors.As(err, &stop) {
			t.Fatalf("waiting for %s: %v", what, stop.error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %s: %v", what, timeout, err)
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
