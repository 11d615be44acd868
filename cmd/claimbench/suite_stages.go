package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// trueTopSQL is the ranking as Postgres holds it, for comparing answers.
const trueTopSQL = `
SELECT provider_npi, total_net_fee_cents FROM provider_totals
ORDER BY total_net_fee_cents DESC, provider_npi DESC LIMIT $1`

// bench runs claimbench in-process with -json and returns its report.
func (s *suite) bench(ctx context.Context, name string, args ...string) (*Report, error) {
	return s.runBench(ctx, name, false, runHooks{}, args...)
}

// benchHooked is bench with hooks between the phases of the run.
func (s *suite) benchHooked(ctx context.Context, name string, hooks runHooks, args ...string) (*Report, error) {
	return s.runBench(ctx, name, false, hooks, args...)
}

// asMainEnv makes a test binary of this package run as claimbench (see
// TestMain), so that benchApart works under go test too.
const asMainEnv = "CLAIMBENCH_AS_MAIN"

// benchApart is bench in a claimbench process of its own, for a load
// measured beside another: in one process, the other load's garbage
// collection and goroutines would be counted in this one's latencies.
func (s *suite) benchApart(ctx context.Context, name string, args ...string) (*Report, error) {
	return s.runBench(ctx, name, true, runHooks{}, args...)
}

func (s *suite) runBench(ctx context.Context, name string, apart bool, hooks runHooks, args ...string) (*Report, error) {
	var out, errOut bytes.Buffer
	args = append(args, "-json", "-progress=false")
	var err error
	if apart {
		self, xerr := os.Executable()
		if xerr != nil {
			return nil, fmt.Errorf("claimbench %s: %w", name, xerr)
		}
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.Env = append(os.Environ(), asMainEnv+"=1")
		err = cmd.Run()
	} else {
		err = runWith(ctx, args, &out, &errOut, hooks)
	}
	if err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("claimbench %s: %w: %s", name, err, errOut.String())
	}
	var rep Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		return nil, fmt.Errorf("claimbench %s: report: %w", name, jerr)
	}
	if rep.Verification != nil {
		s.res.Verifications = append(s.res.Verifications, verification{
			Run: name, Passed: rep.Verification.Passed, Problems: rep.Verification.ProblemCount,
			Acked: rep.Verification.ClaimsAcked, Refused: rep.Verification.ClaimsRefused,
			Unknown: rep.Verification.ClaimsUnknown, FirstProblems: rep.Verification.Problems,
		})
	}
	return &rep, nil
}

func (s *suite) ingestArgs(p *claimdProc, seed int) []string {
	return []string{"-url", p.url, "-lines", "4", "-npis", strconv.Itoa(s.sc.NPIs), "-seed", strconv.Itoa(seed),
		"-database-url", s.dbURL, "-redis-url", s.cfg.RedisURL, "-redis-prefix", s.redisPrefix,
		"-verify-api-max", strconv.Itoa(s.sc.VerifyAPI)}
}

func (s *suite) lookups(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("/top-providers from Redis: %d clients, %s", s.sc.LookupConc, s.sc.LookupDur)
	hooks := s.cpuHooks(p.c.Pid(), &st.LookupCPU, (*loadResult).total)
	var rep *Report
	err := s.profile(ctx, p, st.label()+"-lookups", s.sc.LookupDur, func() (err error) {
		rep, err = s.benchHooked(ctx, st.label()+" top (redis)", hooks, append(s.generatorProfile(st.label()+"-lookups"),
			"-url", p.url, "-mode", "top", "-concurrency", strconv.Itoa(s.sc.LookupConc),
			"-duration", s.sc.LookupDur.String(), "-verify=false")...)
		return err
	})
	if err != nil {
		return err
	}
	st.Lookup = rep
	st.LookupSource = s.checkAnswer(ctx, p, "redis")

	s.logf("/providers/{npi} from Redis: %d clients, %s", s.sc.LookupConc, s.sc.LookupDur)
	hooks = s.cpuHooks(p.c.Pid(), &st.RankCPU, (*loadResult).total)
	st.Rank, err = s.benchHooked(ctx, st.label()+" provider rank (redis)", hooks, "-url", p.url, "-mode", "rank",
		"-npis", strconv.Itoa(s.sc.NPIs), "-concurrency", strconv.Itoa(s.sc.LookupConc),
		"-duration", s.sc.LookupDur.String(), "-verify=false")
	if err != nil {
		return err
	}

	s.logf("/top-providers?%s from Redis: %d clients, %s", periodBoard, s.sc.LookupConc, s.sc.LookupDur)
	hooks = s.cpuHooks(p.c.Pid(), &st.PeriodCPU, (*loadResult).total)
	st.Period, err = s.benchHooked(ctx, st.label()+" period top (redis)", hooks, "-url", p.url, "-mode", "top",
		"-board", periodBoard, "-concurrency", strconv.Itoa(s.sc.LookupConc), "-duration", s.sc.LookupDur.String(), "-verify=false")
	return err
}

// periodBoard is the period's board the suite looks up: the year of the
// preloaded lines' service dates, so it holds every preloaded provider.
const periodBoard = "window=year&period=2025"

// checkAnswer reads top-10 once and compares it with Postgres: "" when the
// answer comes from the expected source and equals the truth.
func (s *suite) checkAnswer(ctx context.Context, p *claimdProc, source string) string {
	truth, err := s.trueTop(ctx, 10)
	if err != nil {
		return err.Error()
	}
	got, src, err := loadkit.GetTop(ctx, http.DefaultClient, p.url, "", 10)
	switch {
	case err != nil:
		return err.Error()
	case src != source:
		return fmt.Sprintf("answered from %s, expected %s", src, source)
	case !slices.Equal(got, truth):
		return fmt.Sprintf("answer %v differs from Postgres %v", got, truth)
	}
	return ""
}

func (s *suite) trueTop(ctx context.Context, n int) ([]loadkit.ProviderTotal, error) {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, trueTopSQL, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (loadkit.ProviderTotal, error) {
		var t loadkit.ProviderTotal
		err := r.Scan(&t.NPI, &t.Cents)
		return t, err
	})
}

func (s *suite) single(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("single-claim ingest: %d clients, 4-line claims, %s", s.sc.SingleConc, s.sc.SingleDur)
	hooks := s.cpuHooks(p.c.Pid(), &st.SingleCPU, ackedClaims)
	return s.profile(ctx, p, st.label()+"-single", s.sc.SingleDur, func() error {
		rep, err := s.benchHooked(ctx, st.label()+" single", hooks, append(append(s.ingestArgs(p, 11), s.generatorProfile(st.label()+"-single")...), "-mode", "single",
			"-concurrency", strconv.Itoa(s.sc.SingleConc), "-duration", s.sc.SingleDur.String())...)
		st.Single = rep
		return err
	})
}

func (s *suite) halfRate(ctx context.Context, p *claimdProc, st *stageResult) error {
	st.HalfRate = st.Single.ClaimsPerSec / 2
	if st.HalfRate < 1 {
		return fmt.Errorf("single-claim ingest measured %.1f claims/s: nothing to halve", st.Single.ClaimsPerSec)
	}
	s.logf("single-claim ingest at half its maximum (%.0f claims/s, open loop) with lookups at %.0f/s, %s", st.HalfRate, s.sc.LookupRate, s.sc.HalfDur)
	var (
		wg           sync.WaitGroup
		ingErr, lErr error
	)
	wg.Go(func() {
		st.Half, ingErr = s.bench(ctx, st.label()+" single at half rate", append(s.ingestArgs(p, 12), "-mode", "single",
			"-rate", strconv.FormatFloat(st.HalfRate, 'f', 1, 64), "-max-in-flight", "256", "-duration", s.sc.HalfDur.String())...)
	})
	wg.Go(func() {
		st.HalfLookup, lErr = s.benchApart(ctx, st.label()+" top during ingest", "-url", p.url, "-mode", "top",
			"-rate", strconv.FormatFloat(s.sc.LookupRate, 'f', 1, 64), "-max-in-flight", "256",
			"-duration", s.sc.HalfDur.String(), "-verify=false")
	})
	wg.Wait()
	return errors.Join(ingErr, lErr)
}

func (s *suite) batch(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("batch ingest: %d claims per request, %d clients, %s", s.sc.BatchSize, s.sc.BatchConc, s.sc.BatchDur)
	probeCfg := config{URL: p.url, Timeout: 10 * time.Second, Concurrency: 1}
	if err := probeBatch(ctx, newHTTPClient(probeCfg), probeCfg); errors.Is(err, errNoBatchEndpoint) {
		st.BatchSkipped = "claimd does not serve POST /claims/batch"
		s.logf("batch ingest skipped: %s", st.BatchSkipped)
		return nil
	}
	return s.profile(ctx, p, st.label()+"-batch", s.sc.BatchDur, func() error {
		rep, err := s.bench(ctx, st.label()+" batch", append(s.ingestArgs(p, 13), "-mode", "batch",
			"-batch-size", strconv.Itoa(s.sc.BatchSize), "-concurrency", strconv.Itoa(s.sc.BatchConc),
			"-duration", s.sc.BatchDur.String())...)
		if errors.Is(err, errNoBatchEndpoint) {
			st.BatchSkipped = "claimd does not serve POST /claims/batch"
			s.logf("batch ingest skipped: %s", st.BatchSkipped)
			return nil
		}
		st.Batch = rep
		return err
	})
}

// rebuild times `claimd reconcile --full` while lookups run against claimd,
// each answer compared with the true top-10 from Postgres (nothing writes
// meanwhile, so the truth is fixed).
func (s *suite) rebuild(ctx context.Context, p *claimdProc, st *stageResult) error {
	truth, err := s.trueTop(ctx, 10)
	if err != nil {
		return err
	}
	s.logf("full Redis rebuild (claimd reconcile --full) of %d providers under lookups", s.sc.Providers)
	r := &st.Rebuild
	stop := make(chan struct{})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lats []time.Duration
	)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var lookups, errs, mismatches, fromRedis, fromPG atomic.Int64
	for range 8 {
		wg.Go(func() {
			var mine []time.Duration
			for {
				select {
				case <-stop:
					mu.Lock()
					lats = append(lats, mine...)
					mu.Unlock()
					return
				default:
				}
				t := time.Now()
				got, src, err := loadkit.GetTop(ctx, client, p.url, "", 10)
				mine = append(mine, time.Since(t))
				lookups.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case !slices.Equal(got, truth):
					mismatches.Add(1)
				}
				switch src {
				case "redis":
					fromRedis.Add(1)
				case "postgres":
					fromPG.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // lookups before, during and after
	started := time.Now()
	out, err := s.claimdCommand(ctx, s.redisURL(), "reconcile", "--full")
	r.Seconds = time.Since(started).Seconds()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	r.Lookups, r.Errors, r.Mismatches = lookups.Load(), errs.Load(), mismatches.Load()
	r.FromRedis, r.FromPostgres = fromRedis.Load(), fromPG.Load()
	r.Latency = latencies(lats)
	if err != nil {
		// Reported in the table; the measurements after it still run.
		r.Error = err.Error()
		s.logf("rebuild failed after %.2f s: %s", r.Seconds, r.Error)
		return nil
	}
	var res struct {
		Rebuilt   bool    `json:"rebuilt"`
		Providers int64   `json:"providers"`
		Seconds   float64 `json:"duration_seconds"`
		Skipped   bool    `json:"skipped"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return fmt.Errorf("claimd reconcile --full printed %q: %w", out, err)
	}
	r.Reported = res.Seconds
	r.Providers, r.Rebuilt, r.Skipped = res.Providers, res.Rebuilt, res.Skipped
	s.logf("rebuild: %.2f s (claimd says %.2f s), %d providers; %d lookups, %d errors, %d wrong", r.Seconds, res.Seconds, r.Providers, r.Lookups, r.Errors, r.Mismatches)
	return nil
}

func (s *suite) fallback(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("/top-providers from the Postgres fallback (Redis: nothing listening), %d clients, %s", s.sc.LookupConc, s.sc.LookupDur)
	before := s.checkAnswer(ctx, p, "postgres")
	rep, err := s.bench(ctx, st.label()+" top (postgres fallback)", "-url", p.url, "-mode", "top", "-concurrency", strconv.Itoa(s.sc.LookupConc),
		"-duration", s.sc.LookupDur.String(), "-verify=false")
	if err != nil {
		return err
	}
	st.Fallback = rep
	// Latency without queueing behind 32 clients: an open loop at the
	// lookup rate used during ingest.
	s.logf("/top-providers from the Postgres fallback at %.0f/s (open loop), %s", s.sc.LookupRate, s.sc.LookupDur/2)
	st.FallbackAtRate, err = s.bench(ctx, st.label()+" top (postgres fallback) at fixed rate", "-url", p.url, "-mode", "top",
		"-rate", strconv.FormatFloat(s.sc.LookupRate, 'f', 1, 64), "-max-in-flight", "256",
		"-duration", (s.sc.LookupDur / 2).String(), "-verify=false")
	if err != nil {
		return err
	}
	st.FallbackCheck = cmp.Or(before, s.checkAnswer(ctx, p, "postgres"))
	return nil
}
