package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/loadkit/proc"
)

// setup creates the database and migrates it with claimd itself.
func (s *suite) setup(ctx context.Context) error {
	s.dbName = fmt.Sprintf("claims_bench_%d", time.Now().Unix())
	s.redisPrefix = fmt.Sprintf("bench:%d:", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, s.cfg.AdminURL)
	if err != nil {
		return fmt.Errorf("connect to -admin-url: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+s.dbName); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	s.dbURL = withDatabase(s.cfg.AdminURL, s.dbName)
	s.res.Database = s.dbName
	_, err = s.claimdCommand(ctx, s.redisURL(), "migrate")
	return err
}

// cleanup stops every claimd still running, then drops the database and
// deletes the run's Redis keys unless -keep. It runs even after an error
// or an interrupt, on a context of its own.
func (s *suite) cleanup() {
	for _, p := range s.procs {
		p.stop()
	}
	s.dropQueues() // even with -keep: a queue outlives nothing of the run
	if s.cfg.Keep {
		s.logf("kept database %s and Redis keys %s*", s.dbName, s.redisPrefix)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if s.dbName != "" {
		if admin, err := pgx.Connect(ctx, s.cfg.AdminURL); err != nil {
			s.logf("drop database %s: %v", s.dbName, err)
		} else {
			if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+s.dbName+" WITH (FORCE)"); err != nil {
				s.logf("drop database %s: %v", s.dbName, err)
			}
			_ = admin.Close(ctx)
		}
	}
	if s.redisPrefix != "" {
		n, err := deletePrefix(ctx, s.cfg.RedisURL, s.redisPrefix)
		if err != nil {
			s.logf("delete Redis keys %s*: %v", s.redisPrefix, err)
		} else {
			s.logf("dropped database %s, deleted %d Redis keys %s*", s.dbName, n, s.redisPrefix)
		}
	}
}

// withDatabase swaps the database name of a postgres:// URL.
func withDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + name
	return u.String()
}

func (s *suite) redisURL() string { return s.cfg.RedisURL }

// deadRedis stands for a Redis URL at a loopback port with nothing
// listening (not the port claimd itself listens on): claimd's Redis calls
// fail at once (connection refused) and it answers from Postgres.
const deadRedis = "dead"

// claimdEnv is the environment of every claimd the suite runs.
func (s *suite) claimdEnv(redisURL string) []string {
	return loadkit.Environ(s.dbURL, redisURL, s.redisPrefix,
		"MIGRATE_ON_START=true",
		// Reconciliation passes run at start only, so that the rebuild
		// measured under lookups is the only one during the run.
		"RECONCILE_INTERVAL=1h",
		"LOG_LEVEL=warn",
	)
}

// claimdCommand runs `claimd args...` (migrate, reconcile) to its end.
func (s *suite) claimdCommand(ctx context.Context, redisURL string, args ...string) ([]byte, error) {
	return loadkit.RunClaimd(ctx, s.cfg.Claimd, s.claimdEnv(redisURL), args...)
}

// claimdProc is a claimd serving as the suite's child, and the peaks of
// its resident set.
type claimdProc struct {
	name     string
	url      string
	pprof    string // host:port, when -pprof-dir
	c        *loadkit.Claimd
	once     sync.Once
	stopping atomic.Bool
	peak     int64 // VmHWM in bytes, read just before it was stopped
	phases   []rssPhase
}

// rssPhase is claimd's peak RSS during one measurement.
type rssPhase struct {
	Claimd string
	Phase  string
	Bytes  int64
}

func (s *suite) startClaimd(ctx context.Context, name, redisURL string, extraEnv ...string) (*claimdProc, error) {
	return s.startProc(ctx, name, "serve", redisURL, extraEnv...)
}

// startProc starts `claimd serve` or `claimd worker` on a free port
// (HTTP_ADDR, or WORKER_ADDR for the worker's /metrics and /readyz) and
// waits until its /readyz answers 200.
func (s *suite) startProc(ctx context.Context, name, command, redisURL string, extraEnv ...string) (*claimdProc, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := &claimdProc{name: name, url: "http://" + addr}
	if redisURL == deadRedis {
		dead := port
		for dead == port && err == nil {
			dead, err = proc.FreePort()
		}
		redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", dead)
	}
	env := s.claimdEnv(redisURL)
	if command == "worker" {
		env = append(env, "WORKER_ADDR="+addr)
	} else {
		env = append(env, "HTTP_ADDR="+addr)
		if s.cfg.PprofDir != "" {
			pprofPort, perr := proc.FreePort()
			p.pprof = "127.0.0.1:" + strconv.Itoa(pprofPort)
			env = append(env, "PPROF_ADDR="+p.pprof)
			err = errors.Join(err, perr)
		}
	}
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(s.cfg.LogDir, "bench-claimd-"+name+".log")
	p.c = &loadkit.Claimd{Binary: s.cfg.Claimd, Command: command, Name: name, Addr: addr,
		Env: append(env, extraEnv...), LogPath: logPath}
	if err := p.c.Start(); err != nil {
		return nil, err
	}
	child := p.c.Process()
	go func() {
		<-child.Exited()
		if !p.stopping.Load() {
			s.logf("claimd %q exited unexpectedly: %v", p.name, child.State())
		}
	}()
	s.procs = append(s.procs, p)
	s.logf("claimd %s %q started (pid %d) on %s, log %s", command, name, p.c.Pid(), p.url, logPath)
	if err := p.c.WaitReady(ctx, s.sc.ReadyWait, "/readyz", loadkit.StatusOK); err != nil {
		return nil, err
	}
	if !child.Running() { // something else answered on the port
		return nil, fmt.Errorf("claimd %q exited at start; see %s", name, logPath)
	}
	return p, nil
}

// phase records the peak RSS since the last phase and starts a new peak.
func (p *claimdProc) phase(name string) {
	hwm := p.hwm()
	if hwm > p.peak {
		p.peak = hwm
	}
	p.phases = append(p.phases, rssPhase{Claimd: p.name, Phase: name, Bytes: hwm})
	// "5" resets the peak RSS to the current RSS (proc(5), clear_refs).
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.c.Pid()), []byte("5"), 0)
}

// hwm is the process's peak resident set (VmHWM) in bytes, 0 if unknown.
func (p *claimdProc) hwm() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.c.Pid()))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// stop reads the peak RSS, then stops claimd with SIGTERM (SIGKILL after
// 30 s) and returns the peak over its whole life.
func (p *claimdProc) stop() int64 {
	p.once.Do(func() {
		if hwm := p.hwm(); hwm > p.peak {
			p.peak = hwm
		}
		p.stopping.Store(true)
		p.c.Terminate(30 * time.Second)
	})
	return p.peak
}

// waitSource waits until /top-providers answers from the given source.
func (s *suite) waitSource(ctx context.Context, p *claimdProc, source string) error {
	err := proc.Poll(ctx, 100*time.Millisecond, s.sc.ReadyWait, func() error {
		_, src, err := loadkit.GetTop(ctx, http.DefaultClient, p.url, "", 10)
		if err == nil && src != source {
			err = fmt.Errorf("answered from %s", src)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("claimd %q: /top-providers did not answer from %s: %w", p.name, source, err)
	}
	return nil
}

// waitReconciled waits for claimd's start-up reconciliation pass to end: a
// set kept from an earlier stage answers at once, while the pass still
// compares every provider in Redis, which would slow what is measured next.
func (s *suite) waitReconciled(ctx context.Context, p *claimdProc) error {
	if err := loadkit.WaitReconciled(ctx, p.url, 1, 100*time.Millisecond, s.sc.ReadyWait); err != nil {
		return fmt.Errorf("claimd %q: no reconciliation pass succeeded: %w", p.name, err)
	}
	return nil
}

// machine describes where the run happened.
type machine struct {
	Uname, CPU, Memory, Go, Postgres, Redis string
	Cores                                   int
}

func machineInfo(ctx context.Context, adminURL, redisURL string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if out, err := exec.Command("uname", "-a").Output(); err == nil {
		m.Uname = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.Memory = fmt.Sprintf("%.1f GiB", kb/1024/1024)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, adminURL); err == nil {
		_ = conn.QueryRow(ctx, "SELECT current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', shared_buffers=' || current_setting('shared_buffers')").Scan(&m.Postgres)
		_ = conn.Close(ctx)
	}
	if rdb, err := newRedisClient(redisURL, 1); err == nil {
		if info, err := rdb.Info(ctx, "server").Result(); err == nil {
			for _, line := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
					m.Redis = v
				}
			}
		}
		_ = rdb.Close()
	}
	return m
}
