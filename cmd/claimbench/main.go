// Command claimbench drives load against claimd and then checks that what it
// sent is exactly what the service holds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/claim-process/claim-process/internal/rank"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first Ctrl-C the load stops and the report and verification
		// still run; a second one should kill the process as usual.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "claimbench:", err)
		os.Exit(1)
	}
}

const usageHead = `claimbench - load and verification tool for claimd

Sends realistic dental claims (1-8 lines, providers drawn from a Zipf
distribution, fees spread like real dental fees, integer cents throughout,
a unique claim_id per claim) and/or /top-providers lookups, prints a live
progress line on stderr, then reports throughput, latency percentiles and
answers by HTTP status, and verifies that every acknowledged claim is stored
exactly as sent and every provider total moved by exactly what was sent.

Usage:
  claimbench [flags]
  claimbench suite [suite flags]   the whole benchmark suite of make bench (claimbench suite --help)

Examples:
  claimbench -mode single -concurrency 64 -duration 20s -database-url postgres://root@127.0.0.1:5432/claims
  claimbench -mode mix -mix-top-ratio 0.5 -rate 2000 -duration 10s
  claimbench -mode top -concurrency 16 -requests 50000 -verify=false
  claimbench -mode batch -batch-size 1000 -concurrency 4 -lines 4 -duration 20s

Modes:
  single  POST /claims, one claim per request
  top     GET /top-providers?limit=N
  mix     both; each request is a lookup with probability -mix-top-ratio
  batch   POST /claims/batch, -batch-size claims per request as a JSON array; every
          item's answer is checked, and items answered 503 (or not read) are resent
  rank    GET /providers/{npi}, the provider drawn as claims draw theirs (Zipf)

Notes:
  * /top-providers is rate limited by claimd by default (TOP_PROVIDERS_RATE_LIMIT=10/min).
    For the top and mix modes run claimd with TOP_PROVIDERS_RATE_LIMIT=0; 429 answers are
    counted and reported separately. Verification reads /top-providers a few times and waits
    6 s after a 429 (the default limit frees one request every 6 s), so it also works against
    a rate-limited server, slowly.
  * Verification assumes claimbench is the only writer while it runs: anything else posting
    claims for the same providers makes the totals differ.
  * Claims whose outcome is unknown (timeout, 5xx, 503) are resent with the same claim_id
    after the load, which the server deduplicates, so every claim ends acknowledged or refused.
  * Against claimd in async mode (INGEST_MODE=async) a claim answered 202 counts as
    acknowledged: the rate is the rate of acceptance. Before verifying, claimbench waits
    (up to -drain-wait) until every accepted claim is stored, which needs a claimd worker
    running; -stored-sample N follows every Nth accepted claim with GET /claims/{id} to
    report the time from 202 to stored.
  * Exit status: 0 when the load ran and verification passed (or was skipped), 1 otherwise.

Flags:
`

// config is everything a run is told by its flags.
type config struct {
	CPUProfile   string
	URL          string
	Mode         string
	Concurrency  int
	Rate         float64
	Duration     time.Duration
	Requests     int64
	NPIs         int
	ZipfS        float64
	MaxLines     int
	Lines        int
	BatchSize    int
	VerifyAPIMax int
	MixTopRatio  float64
	TopLimit     int
	Board        string // query naming the board of the lookups, "window=year&period=2025"
	Seed         int64
	Timeout      time.Duration
	MaxInFlight  int
	Verify       bool
	VerifyWait   time.Duration
	DatabaseURL  string
	RedisURL     string
	RedisPrefix  string
	JSON         bool
	Progress     bool
	RunID        string
	APIKey       string
	VerifyConc   int
	DrainWait    time.Duration
	StoredSample int
	progressTick time.Duration // 1s; tests shorten it
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("claimbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8000", "base URL of claimd")
	fs.StringVar(&c.Mode, "mode", "single", "single | top | mix | batch")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "closed loop: this many clients, each sending its next request when the last is answered (ignored with -rate)")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: start this many requests per second whatever the answers' latency; latency is then measured from each request's scheduled start, so client-side queueing counts")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 1024, "with -rate: at most this many requests outstanding; beyond it the schedule falls behind (and latencies show it)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send (ignored when -requests is set)")
	fs.Int64Var(&c.Requests, "requests", 0, "send exactly this many requests instead of running for -duration")
	fs.IntVar(&c.NPIs, "npis", 10000, "number of distinct providers")
	fs.Float64Var(&c.ZipfS, "zipf-s", 1.1, "Zipf exponent (> 1) of the provider distribution; larger is more skewed")
	fs.IntVar(&c.MaxLines, "max-lines", 8, "claims have 1 to this many lines")
	fs.IntVar(&c.Lines, "lines", 0, "when set, every claim has exactly this many lines (instead of 1 to -max-lines)")
	fs.IntVar(&c.BatchSize, "batch-size", 1000, "batch mode: claims per POST /claims/batch (1-10,000)")
	fs.IntVar(&c.VerifyAPIMax, "verify-api-max", 0, "read at most this many acknowledged claims back through GET /claims/{id}, spread over the run (0: all); the Postgres checks always cover every claim")
	fs.Float64Var(&c.MixTopRatio, "mix-top-ratio", 0.5, "mix mode: fraction of requests that are /top-providers lookups")
	fs.IntVar(&c.TopLimit, "top-limit", 10, "limit of the /top-providers lookups of the load (1-100)")
	fs.StringVar(&c.Board, "board", "", "top and rank modes: the board looked up, as a query (e.g. window=year&period=2025); default the all-time one")
	fs.Int64Var(&c.Seed, "seed", 1, "seed of the generator: the same seed sends the same claims (with new claim_ids)")
	fs.StringVar(&c.RunID, "run-id", "", "prefix of this run's claim_ids (default: random), e.g. to find them in the database")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.BoolVar(&c.Verify, "verify", true, "verify at the end that the service holds exactly what was acknowledged")
	fs.DurationVar(&c.VerifyWait, "verify-wait", 10*time.Second, "how long verification waits for /top-providers and Redis to converge (reconciliation repairs a missed Redis write within RECONCILE_INTERVAL)")
	fs.IntVar(&c.VerifyConc, "verify-concurrency", 16, "parallel GET /claims/{id} during verification")
	fs.DurationVar(&c.DrainWait, "drain-wait", 2*time.Minute, "async mode (202 answers): how long verification waits for every accepted claim to be stored by the workers before checking")
	fs.IntVar(&c.StoredSample, "stored-sample", 0, "async mode: follow every Nth claim answered 202 with GET /claims/{id} every 5 ms until it is stored, and report the time from 202 to stored (0: none)")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "claimd's Postgres (optional): then verification compares claims and provider_totals exactly")
	fs.StringVar(&c.RedisURL, "redis-url", "", "claimd's Redis (optional): then verification compares the ranking's scores exactly")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", rank.DefaultPrefix, "claimd's REDIS_KEY_PREFIX")
	fs.StringVar(&c.APIKey, "api-key", "", "bearer key, when claimd runs with API_KEYS")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON on stdout")
	fs.BoolVar(&c.Progress, "progress", true, "print a progress line on stderr every second")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of claimbench itself during the load (not verification) to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["requests"] && set["duration"] {
		return c, errors.New("give -duration or -requests, not both")
	}
	if set["rate"] && set["concurrency"] {
		return c, errors.New("give -concurrency (closed loop) or -rate (open loop), not both")
	}
	c.progressTick = time.Second
	return c, c.validate()
}

func (c *config) validate() error {
	var bad []string
	switch c.Mode {
	case "single", "top", "mix", "batch", "rank":
	default:
		bad = append(bad, fmt.Sprintf("-mode %q: want single, top, mix, batch or rank", c.Mode))
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad = append(bad, fmt.Sprintf("-url %q: want http://host:port", c.URL))
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.Rate < 0 || (c.Rate == 0 && c.Concurrency < 1) {
		bad = append(bad, "-concurrency must be at least 1, or -rate above 0")
	}
	if c.Requests < 0 || (c.Requests == 0 && c.Duration <= 0) {
		bad = append(bad, "-duration must be positive, or -requests at least 1")
	}
	if c.NPIs < 1 || c.NPIs > 10_000_000 {
		bad = append(bad, "-npis must be 1 to 10,000,000")
	}
	if c.ZipfS <= 1 {
		bad = append(bad, "-zipf-s must be above 1")
	}
	if c.MaxLines < 1 || c.MaxLines > 100 {
		bad = append(bad, "-max-lines must be 1 to 100")
	}
	if c.Lines < 0 || c.Lines > 100 {
		bad = append(bad, "-lines must be 0 (drawn) to 100")
	}
	if c.BatchSize < 1 || c.BatchSize > 10_000 {
		bad = append(bad, "-batch-size must be 1 to 10,000")
	}
	if c.VerifyAPIMax < 0 {
		bad = append(bad, "-verify-api-max must be 0 (all) or more")
	}
	if c.MixTopRatio < 0 || c.MixTopRatio > 1 {
		bad = append(bad, "-mix-top-ratio must be 0 to 1")
	}
	if c.TopLimit < 1 || c.TopLimit > 100 {
		bad = append(bad, "-top-limit must be 1 to 100")
	}
	if c.MaxInFlight < 1 || c.VerifyConc < 1 {
		bad = append(bad, "-max-in-flight and -verify-concurrency must be at least 1")
	}
	if c.DrainWait <= 0 || c.StoredSample < 0 {
		bad = append(bad, "-drain-wait must be positive and -stored-sample 0 or more")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// run is the whole program; its dependencies on the process are passed in
// so the integration test runs it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, stdout, stderr, runHooks{})
}

// runHooks let the suite act between the phases of an in-process run.
type runHooks struct {
	// beforeLoad is called just before the first request of the load.
	beforeLoad func()
	// afterLoad is called once the load (and the settling of unknown
	// outcomes) has ended, before verification waits for accepted claims to
	// be stored: the suite starts the async workers there and times the drain.
	afterLoad func(res *loadResult)
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, hooks runHooks) error {
	if len(args) > 0 && args[0] == "suite" {
		return runSuite(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "bare-server" { // the suite's HTTP ceiling
		return serveBare(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	client := newHTTPClient(cfg)
	defer client.CloseIdleConnections()

	if cfg.Mode == "batch" {
		// Ask once with an empty batch, so a server without the endpoint is
		// named plainly instead of failing every request of the run.
		if err := probeBatch(ctx, client, cfg); err != nil {
			return err
		}
	}

	// The baseline must be read before the first claim is sent.
	var v *verifier
	if cfg.Verify && cfg.Mode != "top" && cfg.Mode != "rank" {
		v, err = newVerifier(ctx, cfg, client, stderr)
		if err != nil {
			return fmt.Errorf("verification baseline: %w", err)
		}
		defer v.Close()
	}

	if hooks.beforeLoad != nil {
		hooks.beforeLoad()
	}
	stopProfile, err := startCPUProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	res := runLoad(ctx, cfg, client, stderr)
	if err := stopProfile(); err != nil {
		return err
	}
	if hooks.afterLoad != nil {
		hooks.afterLoad(res)
	}

	// Verification must run even when the load was interrupted, so it gets a
	// context of its own.
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute+cfg.DrainWait)
	defer cancel()
	var (
		vr    *VerifyReport
		drain *drainReport
	)
	if v != nil {
		if res.acceptedClaims() > 0 {
			drain = v.waitStored(vctx, res)
		}
		vr = v.Verify(vctx, res)
	}
	rep := buildReport(cfg, res, vr)
	rep.Drain = drain
	if cfg.JSON {
		err = writeJSONReport(stdout, rep)
	} else {
		err = writeTextReport(stdout, rep)
	}
	if err != nil {
		return err
	}
	if vr != nil && !vr.Passed {
		return fmt.Errorf("verification failed: %d problems", vr.ProblemCount)
	}
	if res.total() == 0 {
		return errors.New("no request was answered")
	}
	return nil
}

// startCPUProfile profiles claimbench into path ("" does nothing); the
// returned stop ends the profile and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
