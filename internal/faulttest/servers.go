package faulttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// RedisServer is a redis-server of the test's own on a free port. Unlike
// testenv.RedisServer it can also be paused (SIGSTOP), which the scenarios
// need to make Redis hang rather than refuse connections. It keeps nothing on
// disk, so a restart comes back empty, as the real deployment's Redis does.
type RedisServer struct {
	t      testing.TB
	port   int
	dir    string
	proc   *process // nil when not started, or after Kill
	paused bool
}

// StartRedis starts a redis-server; it is killed when the test ends.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server must be installed")
	s := &RedisServer{t: t, port: testenv.FreePort(t), dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Kill)
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
	require.Nil(s.t, s.proc, "redis-server is already running")
	proc, err := spawn(exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log")))
	require.NoError(s.t, err)
	s.proc = proc
	client := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer client.Close()
	waitFor(s.t, 10*time.Second, "redis-server on "+s.Addr()+" to answer", func() error {
		return client.Ping(context.Background()).Err()
	})
}

// Kill kills the server (SIGKILL: nothing is saved) and waits for it to exit.
func (s *RedisServer) Kill() {
	if s.proc == nil {
		return
	}
	s.proc.Kill() // SIGKILL works on a paused (stopped) process too
	s.proc, s.paused = nil, false
}

// Pause stops the server with SIGSTOP: connections stay open but nothing is
// answered, the way a stuck or swapping Redis behaves.
func (s *RedisServer) Pause() {
	s.t.Helper()
	require.NotNil(s.t, s.proc, "redis-server is not running")
	require.NoError(s.t, s.proc.Signal(syscall.SIGSTOP))
	s.paused = true
}

// Resume continues a paused server with SIGCONT.
func (s *RedisServer) Resume() {
	s.t.Helper()
	require.True(s.t, s.paused, "redis-server is not paused")
	require.NoError(s.t, s.proc.Signal(syscall.SIGCONT))
	s.paused = false
}

// FlushAll empties the server. Only ever this test's own server.
func (s *RedisServer) FlushAll() {
	s.t.Helper()
	client := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer client.Close()
	require.NoError(s.t, client.FlushAll(context.Background()).Err())
}

// pgBin is where Debian installs the Postgres 15 server binaries.
const pgBin = "/usr/lib/postgresql/15/bin"

// PostgresServer is a postgres of the test's own, in a data directory made by
// initdb, on a free port, for the scenarios that stop it. Postgres refuses to
// run as root: initdb runs as the postgres user via runuser, and the server
// itself is started directly as that user (a child of the test, so it dies
// with it even if the test binary is killed: see process), in a directory
// that user owns (t.TempDir is private to root).
type PostgresServer struct {
	t    testing.TB
	port int
	root string // owned by postgres: data, socket dir, logs
	cred *syscall.Credential
	proc *process // nil when not started, or after Stop
}

// StartPostgres initializes a cluster and starts it; it is stopped and
// deleted when the test ends.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	u, err := user.Lookup("postgres")
	require.NoError(t, err, "the postgres user must exist")
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	require.NoError(t, errors.Join(err1, err2))
	root, err := os.MkdirTemp("", "faulttest-pg-")
	require.NoError(t, err)
	p := &PostgresServer{t: t, port: testenv.FreePort(t), root: root,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpFile(t, "postgres log", p.logPath())
		}
		_ = os.RemoveAll(root)
	})
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sock"), 0o700))
	out, err := exec.Command("chown", "-R", "postgres:postgres", root).CombinedOutput()
	require.NoError(t, err, "chown %s: %s", root, out)

	out, err = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pgBin, "initdb"),
		"-D", p.dataDir(), "-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C").CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)
	p.Start()
	return p
}

func (p *PostgresServer) dataDir() string { return filepath.Join(p.root, "data") }
func (p *PostgresServer) logPath() string { return filepath.Join(p.root, "postgres.log") }

// URL is the URL of database name on this server, as user postgres.
func (p *PostgresServer) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, name)
}

// Start starts the server (again, on the same data directory and port) and
// waits until it accepts connections.
func (p *PostgresServer) Start() {
	p.t.Helper()
	require.Nil(p.t, p.proc, "postgres is already running")
	logFile, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(p.t, err)
	cmd := exec.Command(filepath.Join(pgBin, "postgres"), "-D", p.dataDir(),
		"-p", strconv.Itoa(p.port), "-k", filepath.Join(p.root, "sock"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", // speed; a fast shutdown still writes everything out
		"-c", "max_connections=100")
	cmd.Dir = p.root
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	proc, err := spawn(cmd)
	_ = logFile.Close() // the child has its own
	require.NoError(p.t, err)
	p.proc = proc

	waitFor(p.t, 30*time.Second, "postgres on port "+strconv.Itoa(p.port), func() error {
		if !proc.Running() {
			return errStop{errors.New("postgres exited during start; see its log")}
		}
		ctx, cancel := withTimeout(2 * time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
}

// Stop stops the server with a fast shutdown (SIGINT, what pg_ctl stop -m
// fast sends): sessions are ended at once, transactions in flight are rolled
// back, committed data is kept.
func (p *PostgresServer) Stop() {
	p.t.Helper()
	require.NotNil(p.t, p.proc, "postgres is not running")
	require.NoError(p.t, p.proc.Signal(syscall.SIGINT))
	select {
	case <-p.proc.exited:
		p.proc = nil
	case <-time.After(60 * time.Second):
		p.t.Fatal("postgres did not stop within 60s of a fast shutdown")
	}
}

// kill stops the server at once (immediate shutdown), at the end of the test.
func (p *PostgresServer) kill() {
	if p.proc == nil {
		return
	}
	p.proc.Terminate(syscall.SIGQUIT, 10*time.Second)
	p.proc = nil
}
