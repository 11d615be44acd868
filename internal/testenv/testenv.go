// Package testenv gives tests real services to talk to without disturbing
// each other or the shared servers: a fresh Postgres database with the real
// migrations, a private key prefix on the shared Redis, or a redis-server of
// their own on a free port for tests that stop, pause, flush and restart it.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/store"
)

// AdminDatabaseURL is the maintenance database tests create their own
// databases from: TEST_DATABASE_URL, by default this machine's Postgres.
func AdminDatabaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://root@127.0.0.1:5432/postgres?sslmode=disable"
}

// SharedRedisURL is the shared Redis: TEST_REDIS_URL, by default this machine's.
func SharedRedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Logger returns a logger that writes through t.Log, shown only on failure.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// MustDatabase creates an empty database for this test, applies the real
// migrations to it, and drops it when the test ends. It returns its URL.
func MustDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("claimd_test_%d_%d", time.Now().UnixNano(), os.Getpid())
	cfg, err := pgx.ParseConfig(AdminDatabaseURL())
	require.NoError(t, err)
	admin, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err, "Postgres must run at %s (see README)", AdminDatabaseURL())
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		conn, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})

	url := replaceDatabase(AdminDatabaseURL(), name)
	st, err := store.Open(ctx, url)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Migrate(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))))
	return url
}

// replaceDatabase swaps the database name in a postgres:// URL.
func replaceDatabase(url, name string) string {
	rest, query, _ := strings.Cut(url, "?")
	i := strings.LastIndex(rest, "/")
	out := rest[:i+1] + name
	if query != "" {
		out += "?" + query
	}
	return out
}

// MustStore opens a store on a fresh database; it is closed when the test ends.
func MustStore(t testing.TB) (*store.Store, string) {
	t.Helper()
	url := MustDatabase(t)
	st, err := store.Open(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st, url
}

// MustSharedRedis returns a client of the shared Redis and a key prefix no
// other test uses. The test's keys are deleted when it ends; nothing else is.
func MustSharedRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opts, err := redis.ParseURL(SharedRedisURL())
	require.NoError(t, err)
	client := redis.NewClient(opts)
	require.NoError(t, client.Ping(context.Background()).Err(), "Redis must run at %s (see README)", SharedRedisURL())
	prefix := fmt.Sprintf("claimd-test:%d:%d:", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		_ = client.Close()
	})
	return client, prefix
}

// RedisServer is a redis-server of the test's own, which it may stop,
// pause and start again, started on the safe proc.Process (it dies with
// the test binary). Like the shared one it keeps nothing on disk, so a
// restart comes back empty.
type RedisServer struct {
	t      testing.TB
	port   int
	dir    string
	child  *proc.Process // nil when not started, or after Stop
	paused bool
}

// MustRedisServer starts a redis-server on a free port; it is stopped when
// the test ends.
func MustRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed: %v", err)
	}
	s := &RedisServer{t: t, port: FreePort(t), dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *RedisServer) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr()) }

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Client returns a new client of the server, closed when the test ends.
func (s *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Start starts the server (again) on its port and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	require.Nil(s.t, s.child, "redis-server is already running")
	child, err := proc.Spawn(exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")))
	require.NoError(s.t, err)
	s.child = child
	client := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer client.Close()
	err = proc.Poll(context.Background(), 20*time.Millisecond, 10*time.Second, func() error {
		if !child.Running() {
			return proc.Stop(fmt.Errorf("redis-server exited (%v); see %s", child.Err(), filepath.Join(s.dir, "redis.log")))
		}
		return client.Ping(context.Background()).Err()
	})
	require.NoError(s.t, err, "redis-server on %s did not start", s.Addr())
}

// Stop kills the server (SIGKILL: nothing is saved, and it works on a
// paused server too) and waits for it to exit.
func (s *RedisServer) Stop() {
	if s.child == nil {
		return
	}
	s.child.Kill()
	s.child, s.paused = nil, false
}

// Pause stops the server with SIGSTOP: connections stay open but nothing is
// answered, the way a stuck or swapping Redis behaves.
func (s *RedisServer) Pause() {
	s.t.Helper()
	require.NotNil(s.t, s.child, "redis-server is not running")
	require.NoError(s.t, s.child.Signal(syscall.SIGSTOP))
	s.paused = true
}

// Resume continues a paused server with SIGCONT.
func (s *RedisServer) Resume() {
	s.t.Helper()
	require.True(s.t, s.paused, "redis-server is not paused")
	require.NoError(s.t, s.child.Signal(syscall.SIGCONT))
	s.paused = false
}

// FlushAll empties the server. Only ever a test's own server: never the
// shared one.
func (s *RedisServer) FlushAll() {
	s.t.Helper()
	client := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer client.Close()
	require.NoError(s.t, client.FlushAll(context.Background()).Err())
}

// FreePort returns a TCP port on the loopback that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := proc.FreePort()
	require.NoError(t, err)
	return port
}

// SuiteRedisEnv names the Redis the suites that run on both kinds use:
// unset, the shared standalone server; "cluster", the test binary's
// six-node Redis Cluster (SharedRedisCluster). make test runs them both ways.
const SuiteRedisEnv = "CLAIMD_TEST_REDIS"

// SuiteRedis returns the Redis of SuiteRedisEnv, a key prefix no other test
// uses, and the ranking shards to run with: 1 on the standalone server, 16
// on the cluster (spread over its three masters).
func SuiteRedis(tb testing.TB) (client redis.UniversalClient, prefix string, shards int) {
	tb.Helper()
	switch kind := os.Getenv(SuiteRedisEnv); kind {
	case "":
		client, prefix := MustSharedRedis(tb)
		return client, prefix, 1
	case "cluster":
		c := SharedRedisCluster(tb)
		return c.Client(), ClusterPrefix(tb, c), 16
	default:
		tb.Fatalf("%s=%q: want empty or cluster", SuiteRedisEnv, kind)
		return nil, "", 0
	}
}
