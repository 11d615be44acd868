package loadkit

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
)

// Environ is the environment of a claimd: the caller's own, then the
// settings every load run needs (its Postgres and Redis, no rate limit on
// /top-providers, claims readable back without a key), then settings, which
// win. keyPrefix "" keeps claimd's default REDIS_KEY_PREFIX.
func Environ(databaseURL, redisURL, keyPrefix string, settings ...string) []string {
	env := append(os.Environ(),
		"EVENTS_EXCHANGE=", // events off unless settings name an exchange of the run's own
		"DATABASE_URL="+databaseURL,
		"REDIS_URL="+redisURL,
		"TOP_PROVIDERS_RATE_LIMIT=0",
		"ALLOW_ANONYMOUS_READS=true", // the checks read claims back
	)
	if keyPrefix != "" {
		env = append(env, "REDIS_KEY_PREFIX="+keyPrefix)
	}
	return append(env, settings...)
}

// Claimd is one long-running claimd process ("claimd serve" or "claimd
// worker") on the safe Process type. It keeps its address, environment
// and log file across restarts.
type Claimd struct {
	Binary  string   // the claimd executable
	Command string   // serve or worker
	Name    string   // for logs and errors
	Addr    string   // host:port it listens on (HTTP_ADDR or WORKER_ADDR in Env)
	Env     []string // its whole environment
	LogPath string   // its output; the first Start truncates it, restarts append

	child  *proc.Process // nil when not started, or after Kill or Terminate
	starts int
}

// URL is its http:// base URL.
func (c *Claimd) URL() string { return "http://" + c.Addr }

// Start starts the process (again). It does not wait for it to be ready
// (see WaitReady).
func (c *Claimd) Start() error {
	if c.child != nil {
		return fmt.Errorf("claimd %s is already running", c.Name)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if c.starts == 0 {
		flags |= os.O_TRUNC
	}
	logFile, err := os.OpenFile(c.LogPath, flags, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logFile, "=== starting claimd %s %s at %s\n", c.Command, c.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.Binary, c.Command)
	cmd.Env = c.Env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	child, err := proc.Spawn(cmd)
	_ = logFile.Close() // the child has its own
	if err != nil {
		return fmt.Errorf("start claimd %s: %w", c.Name, err)
	}
	c.child = child
	c.starts++
	return nil
}

// WaitReady polls GET path every 50ms, up to timeout, until ready accepts
// the answer; it gives up at once if the process exits.
func (c *Claimd) WaitReady(ctx context.Context, timeout time.Duration, path string, ready func(status int, body []byte) error) error {
	child := c.child
	if child == nil {
		return fmt.Errorf("claimd %s is not running", c.Name)
	}
	client := &http.Client{Timeout: 3 * time.Second}
	err := proc.Poll(ctx, 50*time.Millisecond, timeout, func() error {
		if !child.Running() {
			return proc.Stop(fmt.Errorf("claimd %s exited during start (%v); see %s", c.Name, child.Err(), c.LogPath))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+path, nil)
		if err != nil {
			return proc.Stop(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		if _, err := body.ReadFrom(resp.Body); err != nil {
			return err
		}
		return ready(resp.StatusCode, body.Bytes())
	})
	if err != nil {
		return fmt.Errorf("claimd %s %s: %w", c.Name, path, err)
	}
	return nil
}

// StatusOK is a WaitReady check: the answer is 200.
func StatusOK(status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("answered %d %s", status, Snippet(body))
	}
	return nil
}

// Process is the running process, nil when there is none.
func (c *Claimd) Process() *proc.Process { return c.child }

// Pid is the process id of the running process (0 when it is not running).
func (c *Claimd) Pid() int {
	if c.child == nil {
		return 0
	}
	return c.child.Pid()
}

// Starts is how often Start started it.
func (c *Claimd) Starts() int { return c.starts }

// Running reports whether the process is alive.
func (c *Claimd) Running() bool { return c.child != nil && c.child.Running() }

// Kill sends SIGKILL, the crash no code can react to, and waits for the exit.
func (c *Claimd) Kill() {
	if c.child == nil {
		return
	}
	c.child.Kill()
	c.child = nil
}

// Terminate sends SIGTERM and waits up to timeout for the exit, then kills
// it. It returns the process, exited, and whether it exited in time.
func (c *Claimd) Terminate(timeout time.Duration) (*proc.Process, bool) {
	child := c.child
	if child == nil {
		return nil, true
	}
	c.child = nil
	return child, child.Terminate(syscall.SIGTERM, timeout)
}

// RunClaimd runs a claimd command that exits by itself (migrate, reconcile,
// dlq list, ...) with env, on the safe Process type, and returns its
// standard output; a failure (exit status other than 0, or ctx done) is
// returned with its standard error.
func RunClaimd(ctx context.Context, binary string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	child, err := proc.Spawn(cmd)
	if err != nil {
		return nil, err
	}
	select {
	case <-child.Exited():
	case <-ctx.Done():
		child.Kill()
	}
	if err := child.Err(); err != nil || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
		return stdout.Bytes(), fmt.Errorf("claimd %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
