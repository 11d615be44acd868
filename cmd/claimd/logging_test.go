package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// runMainEnv, set, makes this test binary run claimd's main with the
// arguments in it (space-separated) instead of the tests: a claimd process
// whose stderr is the real one.
const runMainEnv = "CLAIMD_TEST_RUN_MAIN"

func runAsMain() {
	args, ok := os.LookupEnv(runMainEnv)
	if !ok {
		return
	}
	os.Args = append([]string{"claimd"}, strings.Fields(args)...)
	main()
	os.Exit(0)
}

// requireJSONLines fails unless every line of out is a JSON object, and
// gives them decoded.
func requireJSONLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(out) {
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &v), "a line that is not JSON: %q", line)
		lines = append(lines, v)
	}
	return lines
}

// With Redis unreachable, go-redis logs each failed dial itself. claimd
// serve, a real process, still writes only JSON lines to stderr: the
// library's line among them, with its own words and the library named.
func TestLibraryLogsAreJSON(t *testing.T) {
	runAsMain()
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(os.Args[0], "-test.run=^TestLibraryLogsAreJSON$")
	cmd.Env = append(os.Environ(), runMainEnv+"=serve",
		"DATABASE_URL="+testenv.MustDatabase(t),
		fmt.Sprintf("REDIS_URL=redis://127.0.0.1:%d/0", testenv.FreePort(t)), // nothing listens there
		"HTTP_ADDR="+addr, "LOG_LEVEL=info", "EVENTS_EXCHANGE=")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + addr + "/top-providers") // Redis first: a dial
		if err != nil {
			return false
		}
		res.Body.Close()
		return strings.Contains(stderr.String(), "failed to dial")
	}, 20*time.Second, 100*time.Millisecond, "go-redis logs its failed dials:\n%s", stderr)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		require.NoError(t, err, "claimd stops cleanly:\n%s", stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("claimd did not stop:\n%s", stderr)
	}

	found := false
	lines := requireJSONLines(t, stderr.String())
	requireDurationsInSeconds(t, lines)
	for _, line := range lines {
		if line["library"] == "go-redis" {
			found = true
			require.Equal(t, "WARN", line["level"])
			require.Contains(t, line["msg"], "connection pool: failed to dial")
		}
	}
	require.True(t, found, "the go-redis line is there, as JSON:\n%s", stderr)
}

// goDuration is a duration as Go writes it ("30s", "1m30s", "2.5ms").
var goDuration = regexp.MustCompile(`^-?([0-9.]+(ns|us|µs|ms|s|m|h))+$`)

// durationKey is a key that names a duration.
var durationKey = regexp.MustCompile(`duration|timeout|interval|elapsed|_in$|_ms$|_s$`)

// requireDurationsInSeconds fails unless every duration in lines is in
// seconds, a number, under a key ending in _seconds.
func requireDurationsInSeconds(t *testing.T, lines []map[string]any) {
	t.Helper()
	for _, line := range lines {
		for k, v := range line {
			if s, ok := v.(string); ok {
				require.NotRegexp(t, goDuration, s, "%s: a duration as Go writes it: %v", k, line)
			}
			if durationKey.MatchString(k) || strings.HasSuffix(k, "_seconds") {
				require.True(t, strings.HasSuffix(k, "_seconds"), "%s: a duration's key ends in _seconds: %v", k, line)
				require.IsType(t, float64(0), v, "%s: seconds as a number: %v", k, line)
			}
		}
	}
}

// Every duration claimd logs is in seconds, a number, under a key ending in
// _seconds; a time.Duration logged as such is turned into that form.
func TestLogDurationsInSeconds(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := newLogger(&buf, slog.LevelInfo)
	log.Info("waited", "wait", 1500*time.Millisecond, "timeout_seconds", 20*time.Second, "n", 3)
	lines := requireJSONLines(t, buf.String())
	require.Len(t, lines, 1)
	require.Equal(t, 1.5, lines[0]["wait_seconds"])
	require.Equal(t, 20.0, lines[0]["timeout_seconds"])
	require.Equal(t, 3.0, lines[0]["n"])
	requireDurationsInSeconds(t, lines)
}

// amqp091-go's lines (a channel closed, a recovery attempt) go the same way.
// Not parallel: it points the process-wide library logger at its buffer.
func TestAMQPLogsAreJSON(t *testing.T) {
	prev := libraryLog.Load()
	t.Cleanup(func() { routeLibraryLogs(prev) })
	var buf syncBuffer // other tests' library lines may come here too
	routeLibraryLogs(newLogger(&buf, slog.LevelInfo))
	amqpLogger{}.Printf("Channel %d closed unexpectedly: %v", 3, errors.New("connection reset"))
	lines := requireJSONLines(t, buf.String())
	require.Len(t, lines, 1)
	require.Equal(t, "amqp091-go", lines[0]["library"])
	require.Equal(t, "Channel 3 closed unexpectedly: connection reset", lines[0]["msg"])
}
