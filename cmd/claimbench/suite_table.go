package main

import (
	"cmp"
	"fmt"
	"math"
	"strings"
	"time"
)

// suiteResult is everything a suite run found.
type suiteResult struct {
	Command, Database string
	Scale             scale
	Started, Finished time.Time
	Machine           machine
	Ceilings          ceilingResult
	Stages            []*stageResult
	Verifications     []verification
	Micro, MicroNote  string
}

type ceilingResult struct {
	SetLinesPerSec float64
	SetConns       int
	SetP99         float64 // ms per 1000-line transaction
	TxClaimsPerSec float64
	TxLinesPerSec  float64
	TxClients      int
	TxP99          float64 // ms per claim transaction
}

type rawRate struct {
	PerSec  float64
	Latency Latency
	Errors  int64
	Clients int
}

type rebuildResult struct {
	Seconds, Reported           float64 // wall time of the command; what claimd reports
	Providers                   int64
	Rebuilt, Skipped            bool
	Lookups, Errors, Mismatches int64
	FromRedis, FromPostgres     int64
	Latency                     Latency
	Error                       string // the rebuild failed
}

type verification struct {
	Run                     string
	Passed                  bool
	Problems                int
	Acked, Refused, Unknown int
	FirstProblems           []string
}

// stageResult is one stage: claimd over a given amount of preloaded data.
type stageResult struct {
	Lines          int64
	Providers      int
	PreloadSeconds float64
	PreloadNote    string

	RedisRaw       rawRate
	RedisBench     float64
	RedisBenchNote string

	RedisProviders                 int64
	RedisZsetBytes, RedisHashBytes int64
	RedisHashes                    int // versions hashes
	RedisBytesPerProvider          float64
	RedisMemNote                   string
	// The boards other than the all-time one: their sorted sets, the
	// providers they hold (a provider in two boards counts twice), and
	// their versions hashes.
	RedisBoards, RedisBoardEntries int64
	RedisBoardBytes                int64

	Lookup         *Report
	LookupSource   string   // "" when an answer came from Redis and was right
	LookupCPU      *cpuCost // per lookup
	Rank           *Report  // GET /providers/{npi}, right after Lookup
	RankCPU        *cpuCost // per lookup
	Period         *Report  // /top-providers of a period's board (periodBoard), right after Rank
	PeriodCPU      *cpuCost // per lookup
	Single         *Report
	SingleCPU      *cpuCost // per claim
	HalfRate       float64
	Half           *Report
	HalfLookup     *Report
	Batch          *Report
	BatchSkipped   string
	Rebuild        rebuildResult
	Fallback       *Report
	FallbackAtRate *Report
	FallbackCheck  string

	Async *asyncResult // first stage only
	Bare  *bareResult  // first stage only

	StartRebuildSeconds float64

	RSSRedis, RSSFallback int64
	RSSPhases             []rssPhase
}

func (st *stageResult) label() string { return humanCount(st.Lines) }

// humanCount writes 1000000 as 1M, 20000 as 20k.
func humanCount(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func (r *suiteResult) verifyProblems() int {
	n := 0
	for _, v := range r.Verifications {
		n += v.Problems
	}
	return n
}

func op(rep *Report, name string) *OpReport {
	if rep == nil {
		return nil
	}
	for i := range rep.Operations {
		if rep.Operations[i].Op == name {
			return &rep.Operations[i]
		}
	}
	return nil
}

// goal is one of the targets the table checks: at least or at most a figure.
type goal struct {
	atLeast bool
	target  float64
}

// verdict says "met" or by how much the value misses the goal.
func (g goal) verdict(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	if g.atLeast {
		if v >= g.target {
			return "met"
		}
		return fmt.Sprintf("missed by %.0f%%", (g.target-v)/g.target*100)
	}
	if v <= g.target {
		return "met"
	}
	if g.target == 0 {
		return fmt.Sprintf("missed (%.0f)", v)
	}
	return fmt.Sprintf("missed by %.0f%%", (v-g.target)/g.target*100)
}

// either is met when one of two goals is, as "≥ 100,000 lines/s or ≥ 80%
// of the ceiling" is; otherwise it names the nearer miss.
func either(a, b string) string {
	if a == "met" || b == "met" {
		return "met"
	}
	if a == "n/a" {
		return b
	}
	return a
}

// worst is the verdict of several goals that must all be met, given as
// name, verdict, name, verdict...: "met" when each is, else each miss.
func worst(namedVerdicts ...string) string {
	var missed []string
	for i := 0; i+1 < len(namedVerdicts); i += 2 {
		if v := namedVerdicts[i+1]; v != "met" {
			missed = append(missed, namedVerdicts[i]+" "+v)
		}
	}
	if len(missed) == 0 {
		return "met"
	}
	return strings.Join(missed, "; ")
}

// row is one line of the table: a figure per stage, the goal, the verdict.
type row struct {
	measure string
	values  []string
	goal    string
	verdict []string // per stage; empty strings for none
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v >= 100:
		return commas(int64(math.Round(v)))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func pct(a, b float64) string {
	if b <= 0 || math.IsNaN(a) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", a/b*100)
}

// rows builds the table from the results.
func (r *suiteResult) rows() []row {
	c := r.Ceilings
	var rows []row
	add := func(measure, goalText string, f func(st *stageResult) (string, string)) {
		rw := row{measure: measure, goal: goalText}
		for _, st := range r.Stages {
			v, verdict := f(st)
			rw.values = append(rw.values, v)
			rw.verdict = append(rw.verdict, verdict)
		}
		rows = append(rows, rw)
	}
	once := func(measure, value, goalText, verdict string) {
		rw := row{measure: measure, goal: goalText}
		for i := range r.Stages {
			if i == 0 {
				rw.values = append(rw.values, value)
				rw.verdict = append(rw.verdict, verdict)
			} else {
				rw.values = append(rw.values, "″")
				rw.verdict = append(rw.verdict, "")
			}
		}
		rows = append(rows, rw)
	}

	once(fmt.Sprintf("Postgres alone, set-based insert (INSERT … SELECT unnest, 1000 lines + 250 claims per transaction, %d connections)", c.SetConns),
		num(c.SetLinesPerSec)+" lines/s", "(ceiling)", "")
	once(fmt.Sprintf("Postgres alone, one claim per transaction (claim + 4 lines + totals upsert, pipelined, %d clients)", c.TxClients),
		fmt.Sprintf("%s claims/s = %s lines/s (p99 %.1f ms)", num(c.TxClaimsPerSec), num(c.TxLinesPerSec), c.TxP99), "(ceiling)", "")
	add("Redis alone, ZREVRANGE 0 9 WITHSCORES on the ranking (go-redis, 16 goroutines)", "(ceiling)", func(st *stageResult) (string, string) {
		return fmt.Sprintf("%s/s (p99 %.2f ms)", num(st.RedisRaw.PerSec), st.RedisRaw.Latency.P99), ""
	})
	add("Redis alone, the same with redis-benchmark", "(ceiling)", func(st *stageResult) (string, string) {
		if st.RedisBench == 0 {
			return st.RedisBenchNote, ""
		}
		return fmt.Sprintf("%s/s (%s)", num(st.RedisBench), st.RedisBenchNote), ""
	})

	add(fmt.Sprintf("Single-claim ingest, 4-line claims, %d clients: lines/s (claims/s)", r.Scale.SingleConc), "≥ 40,000 lines/s (10,000 claims/s)", func(st *stageResult) (string, string) {
		if st.Single == nil {
			return "n/a", "n/a"
		}
		return fmt.Sprintf("%s (%s)", num(st.Single.LinesPerSec), num(st.Single.ClaimsPerSec)), goal{true, 40_000}.verdict(st.Single.LinesPerSec)
	})
	add("Single-claim ingest latency p50 / p99 / p99.9", "p99 ≤ 25 ms", func(st *stageResult) (string, string) {
		o := op(st.Single, opPostClaim)
		if o == nil {
			return "n/a", "n/a"
		}
		return fmt.Sprintf("%.1f / %.1f / %.1f ms", o.Latency.P50, o.Latency.P99, o.Latency.P999), goal{false, 25}.verdict(o.Latency.P99)
	})
	add("Single-claim ingest, CPU per 4-line claim (/proc): claimd / Postgres / Redis / load generator", "claimd ≤ 50 µs, Postgres ≤ 90 µs, Redis ≤ 10 µs", func(st *stageResult) (string, string) {
		cc := st.SingleCPU
		if cc == nil {
			return "n/a", "n/a"
		}
		return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f µs (%s claims)", cc.Claimd, cc.Postgres, cc.Redis, cc.Generator, commas(cc.Units)),
			worst("claimd", goal{false, 50}.verdict(cc.Claimd), "Postgres", goal{false, 90}.verdict(cc.Postgres),
				"Redis", goal{false, 10}.verdict(cc.Redis))
	})
	add("Bare net/http server, claimd's answers as fixed bodies, same generator: GET requests/s (p99), server / generator CPU per request; POST the same", "(ceiling)", func(st *stageResult) (string, string) {
		b := st.Bare
		if b == nil {
			return "n/a", ""
		}
		if b.Skipped != "" {
			return "skipped: " + b.Skipped, ""
		}
		g, p := op(b.Top, opTopProviders), op(b.Post, opPostClaim)
		if g == nil || p == nil || b.TopCPU == nil || b.PostCPU == nil {
			return "n/a", ""
		}
		return fmt.Sprintf("GET %s/s (p99 %.2f ms), %.0f / %.0f µs; POST %s/s (p99 %.2f ms), %.0f / %.0f µs",
			num(g.PerSec), g.Latency.P99, b.TopCPU.Claimd, b.TopCPU.Generator,
			num(p.PerSec), p.Latency.P99, b.PostCPU.Claimd, b.PostCPU.Generator), ""
	})
	add("Single-claim ingest vs. the set-based / per-claim-transaction ceilings", "", func(st *stageResult) (string, string) {
		if st.Single == nil {
			return "n/a", ""
		}
		return fmt.Sprintf("%s / %s", pct(st.Single.LinesPerSec, c.SetLinesPerSec), pct(st.Single.LinesPerSec, c.TxLinesPerSec)), ""
	})
	rows = append(rows, r.asyncRows()...)
	add(fmt.Sprintf("Batch ingest (POST /claims/batch, %d claims a request, %d clients): lines/s (claims/s), %% of set-based ceiling", r.Scale.BatchSize, r.Scale.BatchConc),
		"≥ 100,000 lines/s, or ≥ 80% of the ceiling", func(st *stageResult) (string, string) {
			if st.Batch == nil {
				return cmp.Or(st.BatchSkipped, "n/a"), "n/a"
			}
			v := st.Batch.LinesPerSec
			return fmt.Sprintf("%s (%s), %s", num(v), num(st.Batch.ClaimsPerSec), pct(v, c.SetLinesPerSec)),
				either(goal{true, 100_000}.verdict(v), goal{true, 0.8 * c.SetLinesPerSec}.verdict(v))
		})
	add("Batch request latency p50 / p99", "", func(st *stageResult) (string, string) {
		o := op(st.Batch, opPostBatch)
		if o == nil {
			return "n/a", ""
		}
		return fmt.Sprintf("%.0f / %.0f ms", o.Latency.P50, o.Latency.P99), ""
	})
	add(fmt.Sprintf("/top-providers from Redis, %d clients: requests/s (p50 / p99), %% of raw ZREVRANGE", r.Scale.LookupConc), "≥ 30,000/s, or ≥ 40% of raw ZREVRANGE", func(st *stageResult) (string, string) {
		o := op(st.Lookup, opTopProviders)
		if o == nil {
			return "n/a", "n/a"
		}
		v := fmt.Sprintf("%s (%.2f / %.2f ms), %s; %s of answers from Redis", num(o.PerSec), o.Latency.P50, o.Latency.P99,
			pct(o.PerSec, st.RedisRaw.PerSec), pct(float64(st.Lookup.TopSources["redis"]), float64(o.Count)))
		if st.LookupSource != "" {
			v += "; check: " + st.LookupSource
		}
		return v, either(goal{true, 30_000}.verdict(o.PerSec), goal{true, 0.4 * st.RedisRaw.PerSec}.verdict(o.PerSec))
	})
	add(fmt.Sprintf("/providers/{npi} from Redis, %d clients (providers drawn as the claims drew them): requests/s (p50 / p99), vs. /top-providers in the same run; CPU per lookup claimd / Redis / load generator", r.Scale.LookupConc), "≥ /top-providers's rate (issue 17)", func(st *stageResult) (string, string) {
		o, top := op(st.Rank, opProviderRank), op(st.Lookup, opTopProviders)
		if o == nil || top == nil {
			return "n/a", "n/a"
		}
		v := fmt.Sprintf("%s (%.2f / %.2f ms), ×%.2f the rate", num(o.PerSec), o.Latency.P50, o.Latency.P99, o.PerSec/top.PerSec)
		if cc := st.RankCPU; cc != nil {
			v += fmt.Sprintf("; %.0f / %.0f / %.0f µs", cc.Claimd, cc.Redis, cc.Generator)
		}
		return v, goal{true, top.PerSec}.verdict(o.PerSec)
	})
	add(fmt.Sprintf("/top-providers?%s (a period's board, every preloaded provider) from Redis, %d clients: requests/s (p50 / p99), CPU per lookup claimd + Redis, each vs. the all-time lookup in the same run", periodBoard, r.Scale.LookupConc), "the all-time lookup's cost (issue 17)", func(st *stageResult) (string, string) {
		o, top := op(st.Period, opTopProviders), op(st.Lookup, opTopProviders)
		if o == nil || top == nil || st.PeriodCPU == nil || st.LookupCPU == nil {
			return "n/a", "n/a"
		}
		cost, topCost := st.PeriodCPU.Claimd+st.PeriodCPU.Redis, st.LookupCPU.Claimd+st.LookupCPU.Redis
		v := fmt.Sprintf("%s (%.2f / %.2f ms), ×%.2f the rate; %.0f + %.0f µs, ×%.2f the CPU; %s of answers from Redis", num(o.PerSec),
			o.Latency.P50, o.Latency.P99, o.PerSec/top.PerSec, st.PeriodCPU.Claimd, st.PeriodCPU.Redis, cost/topCost,
			pct(float64(st.Period.TopSources["redis"]), float64(o.Count)))
		// The same cost, within the run's noise (a tenth).
		return v, goal{false, 1.1 * topCost}.verdict(cost)
	})
	add("/top-providers from Redis, CPU per lookup (/proc): claimd / Redis / load generator", "claimd ≤ 25 µs", func(st *stageResult) (string, string) {
		cc := st.LookupCPU
		if cc == nil {
			return "n/a", "n/a"
		}
		return fmt.Sprintf("%.0f / %.0f / %.0f µs (%s lookups)", cc.Claimd, cc.Redis, cc.Generator, commas(cc.Units)),
			goal{false, 25}.verdict(cc.Claimd)
	})
	add("/top-providers from Redis vs. the bare server in the same run: CPU per request (claimd ÷ bare), requests/s (% of bare), p99 (÷ bare)", "≤ ×1.25, ≥ 75%, ≤ ×1.5", func(st *stageResult) (string, string) {
		o, b := op(st.Lookup, opTopProviders), st.Bare
		if o == nil || b == nil || b.TopCPU == nil || st.LookupCPU == nil {
			return "n/a", "n/a"
		}
		bo := op(b.Top, opTopProviders)
		if bo == nil || b.TopCPU.Claimd <= 0 || bo.Latency.P99 <= 0 {
			return "n/a", "n/a"
		}
		cpuRatio, rate, p99Ratio := st.LookupCPU.Claimd/b.TopCPU.Claimd, o.PerSec/bo.PerSec, o.Latency.P99/bo.Latency.P99
		return fmt.Sprintf("×%.2f, %.0f%%, ×%.2f", cpuRatio, 100*rate, p99Ratio),
			worst("CPU", goal{false, 1.25}.verdict(cpuRatio), "rate", goal{true, 0.75}.verdict(rate), "p99", goal{false, 1.5}.verdict(p99Ratio))
	})
	add("/top-providers from Redis while single ingest runs at half its maximum: p50 / p99", "p99 ≤ 5 ms (issue 14; the suite's first goal was 2 ms)", func(st *stageResult) (string, string) {
		o := op(st.HalfLookup, opTopProviders)
		if o == nil {
			return "n/a", "n/a"
		}
		ing := "n/a"
		if st.Half != nil {
			ing = num(st.Half.ClaimsPerSec)
		}
		return fmt.Sprintf("%.2f / %.2f ms (%s lookups/s; ingest %s of %s claims/s asked)", o.Latency.P50, o.Latency.P99, num(o.PerSec), ing, num(st.HalfRate)),
			goal{false, 5}.verdict(o.Latency.P99)
	})
	add(fmt.Sprintf("/top-providers from the Postgres fallback (Redis unreachable): requests/s with %d clients (p50 / p99); p50 / p99 at %s/s", r.Scale.LookupConc, num(r.Scale.LookupRate)), "p99 ≤ 2 ms", func(st *stageResult) (string, string) {
		o, at := op(st.Fallback, opTopProviders), op(st.FallbackAtRate, opTopProviders)
		if o == nil || at == nil {
			return "n/a", "n/a"
		}
		v := fmt.Sprintf("%s (%.2f / %.2f ms); %.2f / %.2f ms; %s providers", num(o.PerSec), o.Latency.P50, o.Latency.P99,
			at.Latency.P50, at.Latency.P99, humanCount(int64(st.Providers)))
		if st.FallbackCheck != "" {
			v += "; check: " + st.FallbackCheck
		}
		return v, goal{false, 2}.verdict(at.Latency.P99)
	})
	add("Full Redis rebuild (claimd reconcile --full) under lookups: duration; lookups, errors, wrong answers", "≤ 10 s, all answers right", func(st *stageResult) (string, string) {
		rb := st.Rebuild
		if rb.Error != "" {
			return fmt.Sprintf("FAILED after %.2f s: %s; %s lookups (p99 %.2f ms), %d errors, %d wrong", rb.Seconds, rb.Error, commas(rb.Lookups), rb.Latency.P99, rb.Errors, rb.Mismatches),
				"missed: the rebuild failed"
		}
		if !rb.Rebuilt {
			return "n/a (no rebuild)", "n/a"
		}
		v := fmt.Sprintf("%.2f s (%s providers); %s lookups (p99 %.2f ms), %d errors, %d wrong", rb.Seconds, humanCount(rb.Providers), commas(rb.Lookups), rb.Latency.P99, rb.Errors, rb.Mismatches)
		verdict := goal{false, 10}.verdict(rb.Seconds)
		if rb.Errors+rb.Mismatches > 0 {
			verdict = fmt.Sprintf("missed: %d bad answers", rb.Errors+rb.Mismatches)
		}
		return v, verdict
	})
	add("claimd peak RSS (VmHWM): Redis-backed / fallback instance", "< 200 MiB", func(st *stageResult) (string, string) {
		return fmt.Sprintf("%.0f / %.0f MiB", mib(st.RSSRedis), mib(st.RSSFallback)), goal{false, 200}.verdict(math.Max(mib(st.RSSRedis), mib(st.RSSFallback)))
	})
	add("Redis memory per provider (MEMORY USAGE of the ranking zset + its versions hashes)", "≤ 128 bytes", func(st *stageResult) (string, string) {
		if st.RedisProviders == 0 {
			return cmp.Or(st.RedisMemNote, "n/a"), "n/a"
		}
		return fmt.Sprintf("%.0f bytes (%s providers: %.1f MiB zset + %.1f MiB in %s hashes)", st.RedisBytesPerProvider,
				commas(st.RedisProviders), mib(st.RedisZsetBytes), mib(st.RedisHashBytes), commas(int64(st.RedisHashes))),
			goal{false, 128}.verdict(st.RedisBytesPerProvider)
	})
	add("Redis memory per provider per board, the other boards (their zsets + versions hashes, over the providers they hold)", "≤ 128 bytes (issue 17)", func(st *stageResult) (string, string) {
		if st.RedisBoardEntries == 0 {
			return "n/a", "n/a"
		}
		per := float64(st.RedisBoardBytes) / float64(st.RedisBoardEntries)
		return fmt.Sprintf("%.0f bytes (%s boards holding %s providers: %.1f MiB)", per, commas(st.RedisBoards),
			commas(st.RedisBoardEntries), mib(st.RedisBoardBytes)), goal{false, 128}.verdict(per)
	})
	add("claimbench verification after each load: differences", "0", func(st *stageResult) (string, string) {
		n, runs := 0, 0
		for _, v := range r.Verifications {
			if strings.HasPrefix(v.Run, st.label()+" ") {
				n += v.Problems
				runs++
			}
		}
		return fmt.Sprintf("%d (%d runs verified)", n, runs), goal{false, 0}.verdict(float64(n))
	})
	if len(r.Stages) > 1 {
		rows = append(rows, r.growthRows()...)
	}
	return rows
}

// growthRows compare the last stage with the first: "flat" is taken as
// within 20% (throughput no more than 20% lower, latency no more than 20%
// higher); no target gives a number.
func (r *suiteResult) growthRows() []row {
	first, last := r.Stages[0], r.Stages[len(r.Stages)-1]
	var rows []row
	ratio := func(measure string, a, b float64, higherIsBetter bool) {
		rw := row{measure: fmt.Sprintf("Growth %s → %s lines: %s", first.label(), last.label(), measure), goal: "flat (within 20%)"}
		v, verdict := "n/a", "n/a"
		if a > 0 && b > 0 && !math.IsNaN(a) && !math.IsNaN(b) {
			v = fmt.Sprintf("%s → %s (×%.2f)", num(a), num(b), b/a)
			if higherIsBetter {
				verdict = goal{true, 0.8}.verdict(b / a)
			} else {
				verdict = goal{false, 1.2}.verdict(b / a)
			}
		}
		for i := range r.Stages {
			if i == len(r.Stages)-1 {
				rw.values, rw.verdict = append(rw.values, v), append(rw.verdict, verdict)
			} else {
				rw.values, rw.verdict = append(rw.values, ""), append(rw.verdict, "")
			}
		}
		rows = append(rows, rw)
	}
	p99 := func(rep *Report, name string) float64 {
		if o := op(rep, name); o != nil {
			return o.Latency.P99
		}
		return math.NaN()
	}
	lines := func(rep *Report) float64 {
		if rep == nil {
			return math.NaN()
		}
		return rep.LinesPerSec
	}
	ratio("Redis lookup p99 (ms)", p99(first.Lookup, opTopProviders), p99(last.Lookup, opTopProviders), false)
	ratio("fallback lookup p99 at a fixed rate (ms)", p99(first.FallbackAtRate, opTopProviders), p99(last.FallbackAtRate, opTopProviders), false)
	ratio("single ingest lines/s", lines(first.Single), lines(last.Single), true)
	ratio("batch ingest lines/s", lines(first.Batch), lines(last.Batch), true)
	return rows
}

// renderMarkdown is the report: the table, then the details behind it.
func renderMarkdown(r *suiteResult) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# claimd benchmarks (`%s`)\n\n", r.Command)
	fmt.Fprintf(&b, "- date: %s (took %s)\n", r.Started.Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "- machine: %s; %d cores; %s RAM\n", m.CPU, m.Cores, m.Memory)
	fmt.Fprintf(&b, "- `uname -a`: %s\n", m.Uname)
	fmt.Fprintf(&b, "- %s; Postgres %s; Redis %s\n", m.Go, m.Postgres, m.Redis)
	fmt.Fprintf(&b, "- scale %s; database %s (dropped at the end unless -keep)\n", r.Scale.Name, r.Database)
	b.WriteString("- claimbench (the load generator), claimd, Postgres and Redis all share these cores: every figure includes the load generator's own CPU use.\n\n")

	header := []string{"measure"}
	for _, st := range r.Stages {
		header = append(header, fmt.Sprintf("%s lines preloaded", st.label()))
	}
	header = append(header, "goal", "verdict")
	table := [][]string{header}
	for _, rw := range r.rows() {
		line := append([]string{rw.measure}, rw.values...)
		line = append(line, rw.goal, joinVerdicts(r, rw.verdict))
		table = append(table, line)
	}
	writeTable(&b, table)

	b.WriteString("\n## Details\n\n")
	for _, st := range r.Stages {
		fmt.Fprintf(&b, "### %s claim lines preloaded over %s providers\n\n", st.label(), humanCount(int64(st.Providers)))
		if st.PreloadSeconds > 0 {
			fmt.Fprintf(&b, "- preload: %.1f s (%s)\n", st.PreloadSeconds, st.PreloadNote)
		}
		for _, x := range []struct {
			name string
			rep  *Report
		}{{"single ingest", st.Single}, {"single ingest at half rate", st.Half}, {"lookups during it", st.HalfLookup},
			{"batch ingest", st.Batch}, {"lookups (Redis)", st.Lookup}, {"lookups (fallback)", st.Fallback},
			{"lookups (fallback, fixed rate)", st.FallbackAtRate}} {
			if x.rep != nil {
				fmt.Fprintf(&b, "- %s: %s\n", x.name, reportLine(x.rep))
			}
		}
		if st.BatchSkipped != "" {
			fmt.Fprintf(&b, "- batch ingest: skipped, %s\n", st.BatchSkipped)
		}
		if a := st.Async; a != nil {
			writeAsyncDetails(&b, a)
		}
		fmt.Fprintf(&b, "- claimd start-up until /top-providers answered from Redis (its first rebuild, into an empty Redis): %.2f s\n", st.StartRebuildSeconds)
		rb := st.Rebuild
		fmt.Fprintf(&b, "- rebuild: command %.2f s, claimd reports %.2f s for %s providers; lookups during it: %d from Redis, %d from Postgres, p50 %.2f / p99 %.2f / max %.2f ms\n",
			rb.Seconds, rb.Reported, commas(rb.Providers), rb.FromRedis, rb.FromPostgres, rb.Latency.P50, rb.Latency.P99, rb.Latency.Max)
		var phases []string
		for _, p := range st.RSSPhases {
			phases = append(phases, fmt.Sprintf("%s/%s %.0f MiB", p.Claimd, p.Phase, mib(p.Bytes)))
		}
		fmt.Fprintf(&b, "- claimd peak RSS per phase: %s\n\n", strings.Join(phases, "; "))
	}
	b.WriteString("### Verification (claimbench, after every load)\n\n")
	for _, v := range r.Verifications {
		verdict := "PASS"
		if !v.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "- %s: %s, %d differences (%d acknowledged, %d refused, %d unknown)\n", v.Run, verdict, v.Problems, v.Acked, v.Refused, v.Unknown)
		for _, p := range v.FirstProblems[:min(5, len(v.FirstProblems))] {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	b.WriteString("\n### How it is measured\n\n")
	b.WriteString(`- Ceilings write the same generator's 4-line claims into copies of claims/claim_lines/provider_totals (same columns, constraints, indexes, foreign key), on their own connections, before claimd starts. The set-based one pipelines two INSERT … SELECT FROM unnest statements (250 claims, 1000 lines) per transaction; the per-claim one pipelines claim, lines and totals upsert (NPI order, RETURNING) in one round trip per transaction, which claimd cannot beat with one claim per commit.
- Each claimd runs as a child process on a free port, on this run's database and Redis key prefix, with TOP_PROVIDERS_RATE_LIMIT=0 and RECONCILE_INTERVAL=1h (only the start-up pass and the measured rebuild run). Its Redis set is rebuilt at start from the preloaded provider_totals before anything is measured.
- Ingest runs are claimbench closed loops (a client sends its next claim when the last is answered) of 4-line claims over claimbench's provider pool (Zipf, s=1.1); "half its maximum" is an open loop at half the claims/s of the single run, latency measured from each request's scheduled start. Latencies are exact nearest-rank percentiles over every answer.
- Verification after every ingest run: every claim of the run looked up in Postgres (each line and amount, none stored unacknowledged), every provider total of the pool and its Redis score equal to baseline + what was acknowledged, /top-providers?limit=100 consistent; GET /claims/{id} for an even spread of at most -verify-api-max acknowledged claims.
- The fallback instance's REDIS_URL is a loopback port with nothing listening; answers must say "source":"postgres" and equal the top-10 read from provider_totals.
- The rebuild runs ` + "`claimd reconcile --full`" + ` (same environment) while 8 clients read /top-providers?limit=10 from the Redis-backed claimd, before, during and after; every answer is compared with the top-10 read from Postgres (nothing writes meanwhile).
- Async (first stage, after the sync single and half-rate runs): a second claimd serve with INGEST_MODE=async, on the same database and Redis prefix, publishing to a quorum queue of the run's own. Accept: the same closed loop as sync single (same clients, claim shape and duration) with no worker running; a 202 counts as acknowledged. Drain: then ` + "`claimd worker`" + ` process(es) with their defaults start, and the drain is timed until the sum of their claimd_queue_acked_total reaches the claims accepted (polled every 50 ms); the rate counts from the moment every worker's /readyz answered (its start-up apart); that run's verification then checks every accepted claim in Postgres, Redis and the API, as for sync runs. End-to-end: an open loop at half the sync single claims/s with the worker(s) running; 202 → stored is read two ways: the increase of the workers' claimd_queue_end_to_end_seconds histogram over the phase (every claim; it runs from the claim's received_at, taken before the Redis status write and the broker's confirm, to the commit, so it includes the server-side part of the POST; quantiles interpolated within coarse buckets) and about 25 claims a second followed by GET /claims/{id} every 5 ms from their 202 answer until it says stored (exact per claim, late by up to a poll and a GET, a sample). Before verifying, claimbench waits until every accepted claim is stored. The sync claimd stays up, idle, meanwhile.
`)
	if r.Micro != "" || r.MicroNote != "" {
		b.WriteString("\n## Micro-benchmarks (go test -bench, fresh database, `BENCH_LINES`/`BENCH_PROVIDERS`)\n\n")
		if r.MicroNote != "" {
			fmt.Fprintf(&b, "%s\n\n", r.MicroNote)
		}
		if r.Micro != "" {
			fmt.Fprintf(&b, "```\n%s```\n", r.Micro)
		}
	}
	return b.String()
}

func joinVerdicts(r *suiteResult, vs []string) string {
	var parts []string
	all := true
	for i, v := range vs {
		if v == "" {
			continue
		}
		if v != "met" {
			all = false
		}
		parts = append(parts, fmt.Sprintf("%s: %s", r.Stages[i].label(), v))
	}
	switch {
	case len(parts) == 0:
		return ""
	case all:
		return "**met**"
	case len(parts) == 1:
		return "**" + strings.SplitN(parts[0], ": ", 2)[1] + "**"
	}
	return "**" + strings.Join(parts, "; ") + "**"
}

// reportLine sums up one claimbench run.
func reportLine(rep *Report) string {
	var parts []string
	if rep.ClaimsAcked > 0 {
		parts = append(parts, fmt.Sprintf("%s claims (%s lines) acknowledged in %.1f s", commas(rep.ClaimsAcked), commas(rep.LinesAcked), rep.ElapsedSeconds))
	}
	for _, o := range rep.Operations {
		l := o.Latency
		parts = append(parts, fmt.Sprintf("%s %s requests, %s/s, p50 %.2f / p90 %.2f / p99 %.2f / p99.9 %.2f / max %.2f ms, answers %s",
			o.Op, commas(o.Count), num(o.PerSec), l.P50, l.P90, l.P99, l.P999, l.Max, itemsLine(o.Statuses)))
	}
	if len(rep.BatchItems) > 0 {
		parts = append(parts, "batch items "+itemsLine(rep.BatchItems))
	}
	if len(rep.TopSources) > 0 {
		parts = append(parts, "answered from "+itemsLine(rep.TopSources))
	}
	if rep.Resolved > 0 {
		parts = append(parts, fmt.Sprintf("%d claims resent to learn their outcome", rep.Resolved))
	}
	if d := rep.Drain; d != nil {
		p := fmt.Sprintf("verification waited %.1f s for the %s accepted claims to be stored", d.WaitedSeconds, commas(d.Accepted))
		if !d.AllStored {
			p += ": " + d.Note
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// writeTable writes a markdown table with padded columns, readable as text.
func writeTable(b *strings.Builder, t [][]string) {
	width := make([]int, len(t[0]))
	for _, r := range t {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		b.WriteString("|")
		for i, c := range r {
			fmt.Fprintf(b, " %s%s |", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		b.WriteString("\n")
	}
	line(t[0])
	b.WriteString("|")
	for _, w := range width {
		b.WriteString(strings.Repeat("-", w+2) + "|")
	}
	b.WriteString("\n")
	for _, r := range t[1:] {
		line(r)
	}
}
