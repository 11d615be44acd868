package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const suiteUsage = `claimbench suite - the benchmark suite of make bench, in one run

Creates a fresh database (claims_bench_<unix time>) on the shared Postgres and
uses a key prefix of its own on the shared Redis (bench:<unix nano>:), preloads
claim lines by bulk SQL, measures what Postgres and Redis can do alone, then
starts claimd (-claimd) as a child process on a free port and measures it:
single-claim and batch ingest, /top-providers from Redis (alone and while
ingest runs at half its maximum), from the Postgres fallback (a second claimd
whose Redis is a port with nothing listening), a full Redis rebuild under
lookups, claimd's peak RSS and Redis bytes per provider. In the first stage,
async ingestion next to it: a second claimd serve with INGEST_MODE=async (same
database and Redis prefix, a RabbitMQ queue of its own, bench.<unix nano>,
deleted at the end with its .dead queue) accepts single claims with no worker
running, then -async-workers claimd worker processes drain the backlog, then a
load at half the sync single rate measures 202 to stored; skipped when
RabbitMQ (-rabbitmq-url) is unreachable. Every claimbench load
ends with its exact verification. Prints a table with the issue's goals and
writes it as markdown to -out. Drops the database and deletes its Redis keys
(SCAN + DEL of its prefix only) at the end, unless -keep.

Scales: tiny (seconds, two small stages; for tests), default (1M preloaded lines over 1M
providers; minutes), large (default, then again with 10M lines: preloads 9M
more and repeats the ingest and lookup measurements; about twice as long).

Usage:
  claimbench suite [flags]

Flags:
`

// suiteConfig is what the suite's flags say.
type suiteConfig struct {
	Scale        string
	Claimd       string
	AdminURL     string
	RedisURL     string
	Out          string
	LogDir       string
	Keep         bool
	Micro        bool
	PprofDir     string
	Async        bool   // the async block (RabbitMQ)
	AsyncWorkers int    // claimd worker processes draining the backlog
	RabbitURL    string // RabbitMQ, for the async block
	Command      string // the command line, for the report
	sc           scale
	startedAt    time.Time
}

// scale sizes a suite run.
type scale struct {
	Name      string
	Stages    []int64 // preloaded claim lines, one stage each
	Providers int     // providers the preloaded lines are spread over
	NPIs      int     // claimbench's provider pool

	CeilingDur  time.Duration // each Postgres ceiling
	RedisDur    time.Duration // raw ZREVRANGE with the Go client
	RedisBenchN int           // redis-benchmark requests
	LookupDur   time.Duration // /top-providers alone, and from the fallback
	SingleDur   time.Duration // single-claim ingest at full speed
	HalfDur     time.Duration // single at half rate, with lookups
	BatchDur    time.Duration
	LookupRate  float64 // lookups per second while ingest runs at half rate
	VerifyAPI   int     // -verify-api-max of the ingest runs
	Micro       bool    // also the go test micro-benchmarks
	ReadyWait   time.Duration
	BatchSize   int
	BatchConc   int
	SingleConc  int
	LookupConc  int
	CeilingConn int // connections of the set-based ceiling
	PerTxConn   int // clients of the per-claim transaction ceiling

	AsyncDrainWait time.Duration // longest the async workers may take to drain the accepted claims
}

func scaleNamed(name string) (scale, error) {
	def := scale{
		Name: "default", Stages: []int64{1_000_000}, Providers: 1_000_000, NPIs: 10_000,
		CeilingDur: 8 * time.Second, RedisDur: 5 * time.Second, RedisBenchN: 200_000,
		LookupDur: 10 * time.Second, SingleDur: 20 * time.Second, HalfDur: 15 * time.Second,
		BatchDur: 15 * time.Second, LookupRate: 1000, VerifyAPI: 10_000, Micro: true,
		ReadyWait: 2 * time.Minute, BatchSize: 1000, BatchConc: 4, SingleConc: 64, LookupConc: 32,
		CeilingConn: 4, PerTxConn: 8, AsyncDrainWait: 3 * time.Minute,
	}
	switch name {
	case "default", "":
		return def, nil
	case "large":
		def.Name = "large"
		def.Stages = []int64{1_000_000, 10_000_000}
		return def, nil
	case "tiny":
		return scale{
			Name: "tiny", Stages: []int64{10_000, 20_000}, Providers: 5_000, NPIs: 300,
			CeilingDur: time.Second, RedisDur: time.Second, RedisBenchN: 2_000,
			LookupDur: time.Second, SingleDur: 2 * time.Second, HalfDur: 2 * time.Second,
			BatchDur: 2 * time.Second, LookupRate: 100, VerifyAPI: 200, Micro: false,
			ReadyWait: time.Minute, BatchSize: 50, BatchConc: 2, SingleConc: 8, LookupConc: 4,
			CeilingConn: 2, PerTxConn: 2, AsyncDrainWait: time.Minute,
		}, nil
	}
	return scale{}, fmt.Errorf("-scale %q: want tiny, default or large", name)
}

func parseSuiteFlags(args []string, stderr io.Writer) (suiteConfig, error) {
	c := suiteConfig{startedAt: time.Now()}
	fs := flag.NewFlagSet("claimbench suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, suiteUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Scale, "scale", envOr("BENCH_SCALE", "default"), "tiny | default | large (default from BENCH_SCALE)")
	fs.StringVar(&c.Claimd, "claimd", "bin/claimd", "the claimd binary to benchmark")
	fs.StringVar(&c.AdminURL, "admin-url", envOr("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432/postgres?sslmode=disable"),
		"a Postgres database to connect to for CREATE/DROP DATABASE; the role must be allowed to create databases (superuser makes the preload faster)")
	fs.StringVar(&c.RedisURL, "redis-url", envOr("REDIS_URL", "redis://127.0.0.1:6379/0"), "the shared Redis; only keys under the run's own prefix are written and deleted")
	fs.StringVar(&c.Out, "out", "bin/bench.md", "write the table and details as markdown here (empty: do not)")
	fs.StringVar(&c.LogDir, "log-dir", "bin", "claimd logs and the micro-benchmarks' raw output go here")
	fs.BoolVar(&c.Keep, "keep", false, "keep the database and the Redis keys (their names are printed)")
	fs.BoolVar(&c.Micro, "micro", true, "also run the go test micro-benchmarks when the scale includes them")
	fs.StringVar(&c.PprofDir, "pprof-dir", "", "when set, claimd serves pprof, and CPU profiles of claimd (single and batch ingest, lookups) and of the load generator (single ingest, lookups) are saved here")
	fs.BoolVar(&c.Async, "async", true, "also measure async ingestion (INGEST_MODE=async, claimd worker) in the first stage; skipped when RabbitMQ is unreachable")
	fs.IntVar(&c.AsyncWorkers, "async-workers", 1, "claimd worker processes draining the async backlog (and running during the end-to-end phase)")
	fs.StringVar(&c.RabbitURL, "rabbitmq-url", envOr("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ of the async block; only the run's own queue (bench.<unix nano>) and its .dead queue are declared and deleted")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (see suite --help)", fs.Args())
	}
	if c.AsyncWorkers < 1 {
		return c, errors.New("-async-workers must be at least 1")
	}
	var err error
	if c.sc, err = scaleNamed(c.Scale); err != nil {
		return c, err
	}
	if _, err := os.Stat(c.Claimd); err != nil {
		return c, fmt.Errorf("-claimd: %w (make bench builds bin/claimd first)", err)
	}
	if c.Claimd, err = filepath.Abs(c.Claimd); err != nil {
		return c, err
	}
	c.Command = "claimbench suite " + strings.Join(args, " ")
	return c, nil
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// runSuite is `claimbench suite`.
func runSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSuiteFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.LogDir != "" {
		if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
			return err
		}
	}
	s := &suite{cfg: cfg, sc: cfg.sc, log: stderr, res: &suiteResult{Scale: cfg.sc, Command: benchCommand(cfg)}}
	runErr := s.run(ctx)
	s.cleanup()
	s.res.Finished = time.Now()
	s.res.Started = cfg.startedAt
	s.res.Machine = machineInfo(ctx, cfg.AdminURL, cfg.RedisURL)

	md := renderMarkdown(s.res)
	if _, err := io.WriteString(stdout, md); err != nil {
		return err
	}
	if cfg.Out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.Out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(cfg.Out, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "suite: wrote %s\n", cfg.Out)
	}
	if runErr != nil {
		return runErr
	}
	if n := s.res.verifyProblems(); n > 0 {
		return fmt.Errorf("suite: claimbench verification found %d differences", n)
	}
	return nil
}

// benchCommand is how the run was started, for the report.
func benchCommand(cfg suiteConfig) string {
	if os.Getenv("MAKELEVEL") != "" {
		if cfg.Scale != "default" {
			return "BENCH_SCALE=" + cfg.Scale + " make bench"
		}
		return "make bench"
	}
	return cfg.Command
}

// suite is one run's state: what it created (to clean up) and what it found.
type suite struct {
	cfg suiteConfig
	sc  scale
	log io.Writer
	res *suiteResult

	dbName, dbURL string
	redisPrefix   string
	procs         []*claimdProc // every claimd started, stopped at cleanup
	queues        []string      // RabbitMQ queues of the run, deleted at cleanup
	preloaded     int64         // claim lines preloaded so far
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "suite %s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (s *suite) run(ctx context.Context) error {
	if err := s.setup(ctx); err != nil {
		return err
	}
	s.logf("database %s, Redis prefix %q; scale %s", s.dbName, s.redisPrefix, s.sc.Name)
	for i, lines := range s.sc.Stages {
		st := &stageResult{Lines: lines, Providers: s.sc.Providers}
		s.res.Stages = append(s.res.Stages, st)
		if err := s.preloadTo(ctx, st, lines); err != nil {
			return err
		}
		if i == 0 {
			if err := s.ceilings(ctx); err != nil {
				return err
			}
		}
		if err := s.stage(ctx, st); err != nil {
			return err
		}
	}
	if s.cfg.Micro && s.sc.Micro {
		s.micro(ctx)
	}
	return nil
}

// stage measures claimd over the data preloaded so far.
func (s *suite) stage(ctx context.Context, st *stageResult) error {
	started := time.Now()
	a, err := s.startClaimd(ctx, "redis", s.redisURL())
	if err != nil {
		return err
	}
	// claimd rebuilds the Redis set at start (the marker is missing); the
	// lookups are measured once it answers from Redis.
	if err := s.waitSource(ctx, a, "redis"); err != nil {
		return err
	}
	if err := s.waitReconciled(ctx, a); err != nil {
		return err
	}
	st.StartRebuildSeconds = time.Since(started).Seconds()
	a.phase("start + rebuild")
	if err := s.redisRaw(ctx, st); err != nil {
		return err
	}
	s.redisMemory(ctx, st)
	if err := s.lookups(ctx, a, st); err != nil {
		return err
	}
	a.phase("lookups")
	if err := s.single(ctx, a, st); err != nil {
		return err
	}
	a.phase("single ingest")
	if st == s.res.Stages[0] {
		if err := s.bare(ctx, a, st); err != nil {
			return err
		}
	}
	if err := s.halfRate(ctx, a, st); err != nil {
		return err
	}
	a.phase("half-rate ingest + lookups")
	if st == s.res.Stages[0] {
		// Async ingestion beside the sync figures just taken; this claimd
		// stays up, idle (its reconciler runs on).
		if err := s.async(ctx, st); err != nil {
			return err
		}
		if st.Async.Skipped == "" {
			a.phase("idle during the async block")
		}
	}
	if err := s.batch(ctx, a, st); err != nil {
		return err
	}
	a.phase("batch ingest")
	if err := s.rebuild(ctx, a, st); err != nil {
		return err
	}
	a.phase("rebuild under lookups")
	s.redisMemory(ctx, st) // again, after ingest and a rebuild
	st.RSSRedis = a.stop()
	st.RSSPhases = append(st.RSSPhases, a.phases...)
	if st.Async != nil {
		st.RSSPhases = append(st.RSSPhases, st.Async.RSSPhases...)
	}

	b, err := s.startClaimd(ctx, "fallback", deadRedis)
	if err != nil {
		return err
	}
	if err := s.fallback(ctx, b, st); err != nil {
		return err
	}
	b.phase("fallback lookups")
	st.RSSFallback = b.stop()
	st.RSSPhases = append(st.RSSPhases, b.phases...)
	return nil
}

// errSkip marks a measurement that could not be taken for a reason the
// report states (e.g. claimd has no batch endpoint yet).
var errSkip = errors.New("skipped")
