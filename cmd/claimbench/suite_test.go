package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// TestSuiteTiny runs the whole benchmark suite at its smallest scale against
// a claimd built from this tree and the shared Postgres and Redis (its own
// database and key prefix, removed at the end), and checks the table is
// whole and every load verified. It asserts nothing about speed.
func TestSuiteTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("runs claimd against Postgres and Redis")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "claimd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/claim-process/claim-process/cmd/claimd").CombinedOutput()
	require.NoError(t, err, "build claimd: %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	md := filepath.Join(dir, "bench.md")
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"suite", "-scale", "tiny", "-claimd", bin, "-out", md, "-log-dir", dir,
		"-admin-url", testenv.AdminDatabaseURL(), "-redis-url", testenv.SharedRedisURL()}, &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s\nstdout:\n%s", stderr.String(), stdout.String())

	written, err := os.ReadFile(md)
	require.NoError(t, err)
	assert.Equal(t, stdout.String(), string(written), "the markdown file holds what was printed")
	report := string(written)
	for _, want := range []string{
		"Postgres alone, set-based insert", "Postgres alone, one claim per transaction",
		"Redis alone, ZREVRANGE", "Single-claim ingest", "Batch ingest", "/top-providers from Redis",
		"/providers/{npi} from Redis", "the rate;", // measured, not n/a
		"while single ingest runs at half its maximum", "Postgres fallback", "Full Redis rebuild",
		"claimd peak RSS", "Redis memory per provider", "verification after each load",
		"CPU per 4-line claim", "CPU per lookup", "Bare net/http server", "vs. the bare server",
		// The async block: measured, or skipped when RabbitMQ is unreachable.
		"Async accept", "Async drain", "Async end-to-end", "Async peak RSS",
		"uname -a", "## Details",
	} {
		assert.Contains(t, report, want)
	}
	assert.NotContains(t, report, "check:", "every checked answer came from the expected source and was right")
	assert.Contains(t, report, "0 wrong")
	assert.NotContains(t, report, "FAIL")
	assert.Regexp(t, `\| 0 \(\d runs verified\)`, report)
	// The CPU of each process, per claim and per lookup, was read from /proc.
	assert.Regexp(t, `\| \d+ / \d+ / \d+ / \d+ µs \([\d,]+ claims\)`, report)
	assert.Regexp(t, `\| \d+ / \d+ / \d+ µs \([\d,]+ lookups\)`, report)

	// Its database and Redis keys are gone.
	assert.NotContains(t, stderr.String(), "kept database")
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "dropped database") {
			return
		}
	}
	t.Errorf("no cleanup line in:\n%s", stderr.String())
}
