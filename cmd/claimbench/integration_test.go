package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// TestAgainstRealClaimd runs claimbench in-process against a claimd binary
// built from this tree, on a fresh database and a redis-server of its own,
// and requires a mix run of 300 requests to verify exactly against the API,
// Postgres and Redis.
func TestAgainstRealClaimd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts claimd against Postgres and Redis")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "claimd")
	build := exec.Command("go", "build", "-o", bin, "github.com/claim-process/claim-process/cmd/claimd")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build claimd: %s", out)

	dbURL := testenv.MustDatabase(t)
	rds := testenv.MustRedisServer(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	logPath := filepath.Join(dir, "claimd.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR="+addr, "DATABASE_URL="+dbURL, "REDIS_URL="+rds.URL(),
		"TOP_PROVIDERS_RATE_LIMIT=0", "ALLOW_ANONYMOUS_READS=true", "LOG_LEVEL=warn",
		"EVENTS_EXCHANGE=") // no events on the shared broker
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("claimd log:\n%s", log)
		}
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 50*time.Millisecond, "claimd did not become ready")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{
		"-url", base, "-mode", "mix", "-requests", "300", "-concurrency", "8", "-npis", "500",
		"-database-url", dbURL, "-redis-url", rds.URL(), "-json", "-progress=false",
	}, &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.NotNil(t, rep.Verification)
	assert.True(t, rep.Verification.Passed, "%v", rep.Verification.Problems)
	assert.Equal(t, int64(300), rep.Requests)
	assert.Greater(t, rep.ClaimsAcked, int64(50))
	assert.Len(t, rep.Verification.Checks, 5, "API, Postgres claims, Postgres totals, Redis, /top-providers")
	var posts, tops int64
	for _, o := range rep.Operations {
		switch o.Op {
		case opPostClaim:
			posts = o.Count
			assert.Equal(t, o.Count, o.Statuses["201"], "every claim created: %v", o.Statuses)
		case opTopProviders:
			tops = o.Count
			assert.Equal(t, o.Count, o.Statuses["200"], "%v", o.Statuses)
		}
	}
	assert.Equal(t, int64(300), posts+tops)
	assert.Positive(t, tops)

	t.Run("batch", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{
			"-url", base, "-mode", "batch", "-requests", "6", "-batch-size", "40", "-concurrency", "2", "-npis", "500",
			"-database-url", dbURL, "-redis-url", rds.URL(), "-json", "-progress=false",
		}, &stdout, &stderr)
		if errors.Is(err, errNoBatchEndpoint) {
			t.Skip("claimd does not serve POST /claims/batch: ", err)
		}
		require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		var rep Report
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
		require.NotNil(t, rep.Verification)
		assert.True(t, rep.Verification.Passed, "%v", rep.Verification.Problems)
		assert.Equal(t, int64(6), rep.Requests)
		assert.Equal(t, int64(240), rep.ClaimsAcked)
		assert.Equal(t, map[string]int64{"201": 240}, rep.BatchItems)
		require.Len(t, rep.Operations, 1)
		assert.Equal(t, opPostBatch, rep.Operations[0].Op)
		assert.Equal(t, map[string]int64{"200": 6}, rep.Operations[0].Statuses)
		assert.Len(t, rep.Verification.Checks, 5)
	})
}
