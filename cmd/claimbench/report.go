package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run, printed as text or, with -json, as JSON.
type Report struct {
	Run             RunInfo          `json:"run"`
	ElapsedSeconds  float64          `json:"elapsed_seconds"`
	Requests        int64            `json:"requests"`
	RequestsPerSec  float64          `json:"requests_per_sec"`
	ClaimsAcked     int64            `json:"claims_acked"`
	ClaimsPerSec    float64          `json:"claims_per_sec"`
	LinesAcked      int64            `json:"lines_acked"`
	LinesPerSec     float64          `json:"lines_per_sec"`
	Operations      []OpReport       `json:"operations"`
	Resolved        int              `json:"claims_resent_to_resolve"`
	TopSources      map[string]int64 `json:"top_providers_sources,omitempty"` // 200 answers by "source"
	BatchSize       int              `json:"batch_size,omitempty"`
	BatchItems      map[string]int64 `json:"batch_items,omitempty"` // item answers during the load, by status
	BatchIncomplete int64            `json:"batch_answers_incomplete,omitempty"`
	Interrupted     bool             `json:"interrupted"`
	// Async mode: the claims answered 202 and the wait for them to be
	// stored before verification; the claims followed from 202 to stored.
	Drain         *drainReport  `json:"drain,omitempty"`
	Stored        *StoredReport `json:"accepted_to_stored,omitempty"`
	Verification  *VerifyReport `json:"verification"` // nil when skipped
	VerifySkipped string        `json:"verification_skipped,omitempty"`
}

// StoredReport is the time from a 202 answer to the claim being readable
// as stored, for the claims -stored-sample followed (GET /claims/{id} every
// PollMs: late by up to a poll and a GET).
type StoredReport struct {
	Followed  int     `json:"followed"`
	NotStored int     `json:"not_stored"` // not stored within -drain-wait
	PollMs    float64 `json:"poll_ms"`
	Latency   Latency `json:"latency_ms"`
}

// RunInfo repeats the settings that shape the numbers.
type RunInfo struct {
	URL         string  `json:"url"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Duration    string  `json:"duration,omitempty"`
	Requests    int64   `json:"requests,omitempty"`
	NPIs        int     `json:"npis"`
	ZipfS       float64 `json:"zipf_s"`
	MixTopRatio float64 `json:"mix_top_ratio,omitempty"`
	Seed        int64   `json:"seed"`
	RunID       string  `json:"run_id"`
}

// OpReport is one operation's figures. Latencies cover every answer,
// whatever its status, so timeouts and errors are not hidden; in an open
// loop they run from each request's scheduled start.
type OpReport struct {
	Op          string           `json:"op"`
	Count       int64            `json:"count"`
	PerSec      float64          `json:"per_sec"`
	Latency     Latency          `json:"latency_ms"`
	Statuses    map[string]int64 `json:"statuses"` // "201", "429", "error: timeout"
	RateLimited int64            `json:"rate_limited"`
}

// Latency percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// percentile is the nearest-rank percentile of sorted samples: the smallest
// sample at or below which p percent of all samples lie. Unlike interpolation
// it always names a latency that was actually observed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps 99.9% of 1000 at rank 999: 99.9 has no exact binary form.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func latencies(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000 }
	return Latency{
		P50: ms(percentile(s, 50)), P90: ms(percentile(s, 90)), P99: ms(percentile(s, 99)),
		P999: ms(percentile(s, 99.9)), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s))),
	}
}

func buildReport(cfg config, res *loadResult, vr *VerifyReport) Report {
	secs := res.Elapsed.Seconds()
	perSec := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return math.Round(float64(n)/secs*10) / 10
	}
	claims, lines := res.ackedClaims()
	rep := Report{
		Run: RunInfo{
			URL: cfg.URL, Mode: cfg.Mode, NPIs: cfg.NPIs, ZipfS: cfg.ZipfS, Seed: cfg.Seed, RunID: cfg.RunID,
		},
		ElapsedSeconds:  math.Round(secs*1000) / 1000,
		Requests:        res.total(),
		RequestsPerSec:  perSec(res.total()),
		ClaimsAcked:     claims,
		ClaimsPerSec:    perSec(claims),
		LinesAcked:      lines,
		LinesPerSec:     perSec(lines),
		Resolved:        res.Resolved,
		TopSources:      res.TopSources,
		BatchItems:      res.Batch.Items,
		BatchIncomplete: res.Batch.Incomplete,
		Interrupted:     res.Canceled,
		Verification:    vr,
	}
	if n := len(res.Stored.latencies) + res.Stored.notStored; n > 0 {
		rep.Stored = &StoredReport{Followed: n, NotStored: res.Stored.notStored,
			PollMs: float64(storedPoll) / float64(time.Millisecond), Latency: latencies(res.Stored.latencies)}
	}
	if cfg.Rate > 0 {
		rep.Run.Rate = cfg.Rate
	} else {
		rep.Run.Concurrency = cfg.Concurrency
	}
	if cfg.Requests > 0 {
		rep.Run.Requests = cfg.Requests
	} else {
		rep.Run.Duration = cfg.Duration.String()
	}
	if cfg.Mode == "mix" {
		rep.Run.MixTopRatio = cfg.MixTopRatio
	}
	if cfg.Mode == "batch" {
		rep.BatchSize = cfg.BatchSize
	}
	switch {
	case !cfg.Verify:
		rep.VerifySkipped = "-verify=false"
	case cfg.Mode == "top", cfg.Mode == "rank":
		rep.VerifySkipped = cfg.Mode + " mode sends no claims"
	}
	for _, op := range slices.Sorted(maps.Keys(res.Ops)) {
		s := res.Ops[op]
		o := OpReport{
			Op: op, Count: int64(len(s.latencies)), PerSec: perSec(int64(len(s.latencies))),
			Latency: latencies(s.latencies), Statuses: map[string]int64{},
			RateLimited: s.statuses[429],
		}
		for code, n := range s.statuses {
			o.Statuses[strconv.Itoa(code)] = n
		}
		for class, n := range s.errors {
			o.Statuses["error: "+class] = n
		}
		rep.Operations = append(rep.Operations, o)
	}
	return rep
}

func writeJSONReport(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func writeTextReport(w io.Writer, rep Report) error {
	var b strings.Builder
	r := rep.Run
	shape := fmt.Sprintf("closed loop, %d clients", r.Concurrency)
	if r.Rate > 0 {
		shape = fmt.Sprintf("open loop, %g requests/s", r.Rate)
	}
	span := r.Duration
	if r.Requests > 0 {
		span = fmt.Sprintf("%d requests", r.Requests)
	}
	fmt.Fprintf(&b, "claimbench %s  mode=%s  %s  %s  npis=%d zipf-s=%g seed=%d run-id=%s",
		r.URL, r.Mode, shape, span, r.NPIs, r.ZipfS, r.Seed, r.RunID)
	if r.Mode == "mix" {
		fmt.Fprintf(&b, " mix-top-ratio=%g", r.MixTopRatio)
	}
	if rep.BatchSize > 0 {
		fmt.Fprintf(&b, " batch-size=%d", rep.BatchSize)
	}
	if rep.Interrupted {
		b.WriteString("  (interrupted)")
	}
	fmt.Fprintf(&b, "\n\nelapsed %.2f s   requests %d (%.1f/s)   claims acknowledged %d (%.1f/s)   lines %d (%.1f/s)\n\n",
		rep.ElapsedSeconds, rep.Requests, rep.RequestsPerSec, rep.ClaimsAcked, rep.ClaimsPerSec, rep.LinesAcked, rep.LinesPerSec)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tcount\tper s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tmean ms\t")
	for _, o := range rep.Operations {
		l := o.Latency
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", o.Op, o.Count, o.PerSec, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\nanswers (latencies cover every answer, whatever its status):\n")
	for _, o := range rep.Operations {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(o.Statuses)) {
			parts = append(parts, fmt.Sprintf("%s: %d", k, o.Statuses[k]))
		}
		fmt.Fprintf(&b, "  %-14s %s\n", o.Op, strings.Join(parts, "  "))
		if o.RateLimited > 0 {
			fmt.Fprintf(&b, "  %-14s %d answers were 429 (rate limited): run claimd with TOP_PROVIDERS_RATE_LIMIT=0\n", "", o.RateLimited)
		}
	}
	if len(rep.BatchItems) > 0 {
		fmt.Fprintf(&b, "  %-14s %s\n", "batch items", itemsLine(rep.BatchItems))
	}
	if len(rep.TopSources) > 0 {
		fmt.Fprintf(&b, "  %-14s %s\n", "top sources", itemsLine(rep.TopSources))
	}
	if rep.BatchIncomplete > 0 {
		fmt.Fprintf(&b, "  %d batch answers were incomplete (the server stopped reading early)\n", rep.BatchIncomplete)
	}
	if rep.Resolved > 0 {
		fmt.Fprintf(&b, "  %d claims without a final answer were resent with the same claim_id to learn their outcome\n", rep.Resolved)
	}
	if d := rep.Drain; d != nil {
		fmt.Fprintf(&b, "  %d claims accepted for the queue (202); verification waited %.1f s for them to be stored", d.Accepted, d.WaitedSeconds)
		if !d.AllStored {
			fmt.Fprintf(&b, ": %s", d.Note)
		}
		b.WriteString("\n")
	}
	if s := rep.Stored; s != nil {
		l := s.Latency
		fmt.Fprintf(&b, "  202 to stored, %d claims followed (GET every %g ms): p50 %.2f / p90 %.2f / p99 %.2f / max %.2f ms; %d not stored in time\n",
			s.Followed, s.PollMs, l.P50, l.P90, l.P99, l.Max, s.NotStored)
	}

	b.WriteString("\nverification: ")
	switch v := rep.Verification; {
	case v == nil:
		fmt.Fprintf(&b, "skipped (%s)\n", rep.VerifySkipped)
	default:
		verdict := "PASS"
		if !v.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "%s  (%d acknowledged, %d refused, %d unknown; %d problems)\n",
			verdict, v.ClaimsAcked, v.ClaimsRefused, v.ClaimsUnknown, v.ProblemCount)
		for _, c := range v.Checks {
			fmt.Fprintf(&b, "  checked: %s\n", c)
		}
		if v.TopSource != "" {
			fmt.Fprintf(&b, "  /top-providers answered from %s\n", v.TopSource)
		}
		for _, p := range v.Problems {
			fmt.Fprintf(&b, "  problem: %s\n", p)
		}
		if v.ProblemCount > len(v.Problems) {
			fmt.Fprintf(&b, "  ... and %d more problems\n", v.ProblemCount-len(v.Problems))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
