package main

import (
	"cmp"
	"fmt"
	"strings"
)

// asyncRows are the async block's, beside the sync single rows: figures in
// the stage that ran it (the first), no goal (none is set).
func (r *suiteResult) asyncRows() []row {
	var ar *asyncResult
	for _, st := range r.Stages {
		if st.Async != nil {
			ar = st.Async
		}
	}
	if ar == nil {
		return nil
	}
	const noGoal = "none set for async"
	var rows []row
	add := func(measure string, f func(st *stageResult, ar *asyncResult) string) {
		rw := row{measure: measure, goal: noGoal}
		for _, st := range r.Stages {
			v := ""
			if st.Async != nil {
				switch a := st.Async; {
				case a.Skipped != "" && len(rows) > 0: // the reason once, in the first row
					v = "skipped (see above)"
				case a.Skipped != "":
					v = "skipped: " + a.Skipped
				default:
					v = f(st, a)
					if a.Error != "" {
						v = cmp.Or(v+"; ", "") + "FAILED: " + a.Error
					}
				}
			}
			rw.values = append(rw.values, v)
			rw.verdict = append(rw.verdict, "")
		}
		rows = append(rows, rw)
	}
	// ratio is async over sync single claims/s.
	ratio := func(st *stageResult, v float64) string {
		if st.Single == nil || st.Single.ClaimsPerSec <= 0 || v <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("×%.2f", v/st.Single.ClaimsPerSec)
	}
	add(fmt.Sprintf("Async accept (INGEST_MODE=async, POST /claims answered 202, no worker running), 4-line claims, %d clients: claims/s (lines/s); POST p50 / p99; vs. sync single claims/s", r.Scale.SingleConc),
		func(st *stageResult, a *asyncResult) string {
			o := op(a.Accept, opPostClaim)
			if o == nil {
				return ""
			}
			return fmt.Sprintf("%s (%s lines/s); %.1f / %.1f ms; %s sync single", num(a.Accept.ClaimsPerSec), num(a.Accept.LinesPerSec),
				o.Latency.P50, o.Latency.P99, ratio(st, a.Accept.ClaimsPerSec))
		})
	workers := "1 claimd worker process"
	if ar.Workers != 1 {
		workers = fmt.Sprintf("%d claimd worker processes", ar.Workers)
	}
	add(fmt.Sprintf("Async drain (%s, default 2 consumers × prefetch 256 each): claims/s (lines/s) storing that backlog once the worker is ready; vs. sync single claims/s", workers),
		func(st *stageResult, a *asyncResult) string {
			if a.DrainSeconds == 0 {
				return ""
			}
			from := "once ready"
			if a.DrainFromStart {
				from = "from the process start"
			}
			v := fmt.Sprintf("%s (%s lines/s) %s; %s sync single; all %s claims stored %.1f s after the process start (ready after %.2f s)",
				num(a.DrainClaimsPerSec), num(a.DrainLinesPerSec), from, ratio(st, a.DrainClaimsPerSec), commas(a.Backlog), a.DrainSeconds, a.WorkerStartSeconds)
			if a.DrainNote != "" {
				v += "; " + a.DrainNote
			}
			return v
		})
	rate := "half the sync single rate"
	if ar.E2ERate > 0 {
		rate = fmt.Sprintf("~%s claims/s (%s)", num(ar.E2ERate), rate)
	}
	add(fmt.Sprintf("Async end-to-end at %s, open loop, worker running: 202 → stored p50 / p99; POST p50 / p99", rate),
		func(st *stageResult, a *asyncResult) string {
			o := op(a.E2E, opPostClaim)
			if o == nil {
				return ""
			}
			var parts []string
			if a.E2EHistError != "" {
				parts = append(parts, "worker histogram: "+a.E2EHistError)
			} else {
				parts = append(parts, fmt.Sprintf("%.1f / %.1f ms (workers' %s: received_at, before the publish confirm, to commit; interpolated within its buckets)", a.E2EHist.P50, a.E2EHist.P99, endToEndMetric))
			}
			if sr := a.E2E.Stored; sr != nil {
				parts = append(parts, fmt.Sprintf("%.1f / %.1f ms (%d claims followed by GET every %g ms)", sr.Latency.P50, sr.Latency.P99, sr.Followed, sr.PollMs))
			}
			parts = append(parts, fmt.Sprintf("POST %.1f / %.1f ms; %s of %s claims/s asked", o.Latency.P50, o.Latency.P99, num(a.E2E.ClaimsPerSec), num(a.E2ERate)))
			return strings.Join(parts, "; ")
		})
	add("Async peak RSS (VmHWM): async claimd serve / claimd worker", func(st *stageResult, a *asyncResult) string {
		if a.RSSServe == 0 {
			return ""
		}
		return fmt.Sprintf("%.0f / %.0f MiB", mib(a.RSSServe), mib(a.RSSWorker))
	})
	return rows
}

// writeAsyncDetails describes the async block under the table.
func writeAsyncDetails(b *strings.Builder, a *asyncResult) {
	switch {
	case a.Skipped != "":
		fmt.Fprintf(b, "- async block: skipped, %s\n", a.Skipped)
		return
	case a.Error != "":
		fmt.Fprintf(b, "- async block: FAILED: %s\n", a.Error)
	}
	fmt.Fprintf(b, "- async block: queue %s (deleted at the end with %s.dead); async claimd ready and reconciled %.2f s after its start\n", a.Queue, a.Queue, a.StartSeconds)
	if a.Accept != nil {
		fmt.Fprintf(b, "- async accept (no worker): %s\n", reportLine(a.Accept))
	}
	if a.DrainSeconds > 0 {
		from := "from the moment the workers were ready"
		if a.DrainFromStart {
			from = "from the workers' start (most was stored before they said ready)"
		}
		fmt.Fprintf(b, "- async drain: %s accepted claims stored %.2f s after starting %d claimd worker process(es) (ready after %.2f s): %s claims/s, %s lines/s %s\n",
			commas(a.Backlog), a.DrainSeconds, a.Workers, a.WorkerStartSeconds, num(a.DrainClaimsPerSec), num(a.DrainLinesPerSec), from)
	}
	if a.E2E != nil {
		fmt.Fprintf(b, "- async end-to-end at %s claims/s: %s\n", num(a.E2ERate), reportLine(a.E2E))
		if a.E2EHistError == "" {
			h := a.E2EHist
			fmt.Fprintf(b, "- async end-to-end from the workers' %s (increase over the phase, %s claims; buckets %s): p50 %.1f / p90 %.1f / p99 %.1f ms, interpolated linearly within a bucket as histogram_quantile does\n",
				endToEndMetric, commas(int64(h.Count)), h.Buckets, h.P50, h.P90, h.P99)
		}
		if sr := a.E2E.Stored; sr != nil {
			l := sr.Latency
			fmt.Fprintf(b, "- async end-to-end by GET polling: %d claims followed from their 202 answer, GET /claims/{id} every %g ms until \"status\":\"stored\": p50 %.1f / p90 %.1f / p99 %.1f / max %.1f ms (late by up to a poll and a GET); %d not stored in time\n",
				sr.Followed, sr.PollMs, l.P50, l.P90, l.P99, l.Max, sr.NotStored)
		}
	}
}
