package faulttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/testenv"
)

// pgBin is where Debian installs the Postgres 15 server binaries.
const pgBin = "/usr/lib/postgresql/15/bin"

// PostgresServer is a postgres of the test's own, in a data directory made by
// initdb, on a free port, for the scenarios that stop it. Postgres refuses to
// run as root: initdb runs as the postgres user via runuser, and the server
// itself is started directly as that user (a child of the test, so it dies
// with it even if the test binary is killed: see proc.Process), in a directory
// that user owns (t.TempDir is private to root).
type PostgresServer struct {
	t        testing.TB
	port     int
	root     string // owned by postgres: data, socket dir, logs
	cred     *syscall.Credential
	settings []string      // extra -c settings, given on every start
	child    *proc.Process // nil when not started, or after Stop
}

// StartPostgres initializes a cluster and starts it, with settings as extra
// name=value server settings (given on the command line, so a standby
// copied from it does not inherit them); it is stopped and deleted when the
// test ends.
func StartPostgres(t testing.TB, settings ...string) *PostgresServer {
	t.Helper()
	p := newPostgresServer(t, "faulttest-pg-", settings)
	out, err := p.runAsPostgres(filepath.Join(pgBin, "initdb"),
		"-D", p.dataDir(), "-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C")
	require.NoError(t, err, "initdb: %s", out)
	p.Start()
	return p
}

// StartStandby makes a streaming standby of p (pg_basebackup -R, which also
// lets it connect back as a replica) on a port of its own, starts it and
// waits until p streams to it. With p started with
// synchronous_standby_names=*, p's commits wait for the standby.
func (p *PostgresServer) StartStandby() *PostgresServer {
	p.t.Helper()
	s := newPostgresServer(p.t, "faulttest-pg-standby-", nil)
	out, err := s.runAsPostgres(filepath.Join(pgBin, "pg_basebackup"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres",
		"-D", s.dataDir(), "-R", "-X", "stream", "-c", "fast", "--no-sync")
	require.NoError(p.t, err, "pg_basebackup: %s", out)
	s.Start()
	p.waitUntil("the standby to stream from the primary",
		"SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming')")
	return s
}

// WaitReplayed waits until every standby of p has replayed all that p wrote.
func (p *PostgresServer) WaitReplayed() {
	p.t.Helper()
	p.waitUntil("the standby to replay everything", `
SELECT count(*) > 0 AND coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) FROM pg_stat_replication`)
}

// waitUntil waits until query, a boolean, is true on p.
func (p *PostgresServer) waitUntil(what, query string) {
	p.t.Helper()
	waitFor(p.t, 30*time.Second, what, func() error {
		ctx, cancel := withTimeout(2 * time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var done bool
		if err := conn.QueryRow(ctx, query).Scan(&done); err != nil {
			return err
		}
		if !done {
			return errors.New("not yet")
		}
		return nil
	})
}

// Promote turns a standby into a primary (pg_ctl promote) and waits until
// it accepts writes.
func (p *PostgresServer) Promote() {
	p.t.Helper()
	out, err := p.runAsPostgres(filepath.Join(pgBin, "pg_ctl"), "promote", "-w", "-t", "30", "-D", p.dataDir())
	require.NoError(p.t, err, "pg_ctl promote: %s", out)
}

// Crash stops the server at once, as a crash would (immediate shutdown:
// no checkpoint, sessions cut).
func (p *PostgresServer) Crash() {
	p.t.Helper()
	require.NotNil(p.t, p.child, "postgres is not running")
	p.kill()
}

// Addr is the server's host:port.
func (p *PostgresServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// FailoverURL is the URL of database name on whichever of servers is the
// primary (libpq's multi-host form, target_session_attrs=read-write).
func FailoverURL(name string, servers ...*PostgresServer) string {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write",
		strings.Join(addrs, ","), name)
}

// newPostgresServer prepares a root directory owned by the postgres user,
// removed with the server when the test ends.
func newPostgresServer(t testing.TB, prefix string, settings []string) *PostgresServer {
	t.Helper()
	u, err := user.Lookup("postgres")
	require.NoError(t, err, "the postgres user must exist")
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	require.NoError(t, errors.Join(err1, err2))
	root, err := os.MkdirTemp("", prefix)
	require.NoError(t, err)
	p := &PostgresServer{t: t, port: testenv.FreePort(t), root: root, settings: settings,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpFile(t, "postgres log ("+prefix+")", p.logPath())
		}
		_ = os.RemoveAll(root)
	})
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sock"), 0o700))
	out, err := exec.Command("chown", "-R", "postgres:postgres", root).CombinedOutput()
	require.NoError(t, err, "chown %s: %s", root, out)
	return p
}

// runAsPostgres runs a Postgres tool as the postgres user (Postgres refuses
// root) and returns its output.
func (p *PostgresServer) runAsPostgres(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", tool}, args...)...)
	cmd.Dir = p.root
	return cmd.CombinedOutput()
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
	require.Nil(p.t, p.child, "postgres is already running")
	logFile, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(p.t, err)
	cmd := exec.Command(filepath.Join(pgBin, "postgres"), "-D", p.dataDir(),
		"-p", strconv.Itoa(p.port), "-k", filepath.Join(p.root, "sock"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", // speed; a fast shutdown still writes everything out
		"-c", "max_connections=100")
	for _, setting := range p.settings {
		cmd.Args = append(cmd.Args, "-c", setting)
	}
	cmd.Dir = p.root
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	child, err := proc.Spawn(cmd)
	_ = logFile.Close() // the child has its own
	require.NoError(p.t, err)
	p.child = child

	waitFor(p.t, 30*time.Second, "postgres on port "+strconv.Itoa(p.port), func() error {
		if !child.Running() {
			return proc.Stop(errors.New("postgres exited during start; see its log"))
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
	require.NotNil(p.t, p.child, "postgres is not running")
	require.NoError(p.t, p.child.Signal(syscall.SIGINT))
	select {
	case <-p.child.Exited():
		p.child = nil
	case <-time.After(60 * time.Second):
		p.t.Fatal("postgres did not stop within 60s of a fast shutdown")
	}
}

// kill stops the server at once (immediate shutdown), at the end of the test.
func (p *PostgresServer) kill() {
	if p.child == nil {
		return
	}
	p.child.Terminate(syscall.SIGQUIT, 10*time.Second)
	p.child = nil
}
