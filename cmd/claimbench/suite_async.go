package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// asyncResult is the async block of the first stage: a second claimd serve
// with INGEST_MODE=async on the same database and Redis prefix, first with
// no worker (the rate of acceptance), then `claimd worker` draining the
// backlog (the rate of storing), then a fixed-rate load with the worker
// running (202 to stored).
type asyncResult struct {
	Skipped string // why the block did not run
	Error   string // it stopped part-way; the figures taken are kept

	Queue        string
	Workers      int     // worker processes
	StartSeconds float64 // async serve: start until ready and reconciled

	Accept  *Report // POST /claims with no worker running
	Backlog int64   // claims accepted (202) by it: what the workers drain

	WorkerStartSeconds float64 // first worker's start until all are ready
	DrainSeconds       float64 // first worker's start until every accepted claim is stored (acked)
	DrainClaimsPerSec  float64 // once the workers are ready (from the start if most was drained by then)
	DrainLinesPerSec   float64
	DrainFromStart     bool   // the rate is from the start (most of the backlog was drained before the workers said ready)
	DrainNote          string // drain not complete, or the like

	E2ERate      float64 // claims/s asked of the end-to-end phase
	E2E          *Report
	E2EHist      histQuantiles // claimd_queue_end_to_end_seconds over the phase
	E2EHistError string

	RSSServe, RSSWorker int64 // peak over the block; the worker's is the largest of the workers
	RSSPhases           []rssPhase
}

// histQuantiles are quantiles of a Prometheus histogram's increase.
type histQuantiles struct {
	Count         float64
	P50, P90, P99 float64 // ms, interpolated linearly inside the bucket
	Buckets       string  // the bucket bounds, for the note
}

// rabbitQueues are the names of the queue and its dead-letter queue.
func rabbitQueues(name string) []string { return []string{name, name + ".dead"} }

// redactURL drops the password from a URL for the report and the logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func dialRabbit(rawURL string) (*amqp.Connection, error) {
	return amqp.DialConfig(rawURL, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second), Heartbeat: 10 * time.Second,
		Properties: amqp.Table{"connection_name": "claimbench suite"}})
}

// deleteQueues deletes the run's queues (empty or not), a channel each: a
// failed delete closes its channel.
func deleteQueues(rawURL string, names []string) error {
	conn, err := dialRabbit(rawURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	var errs []error
	for _, n := range names {
		ch, err := conn.Channel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := ch.QueueDelete(n, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete queue %s: %w", n, err))
			continue
		}
		_ = ch.Close()
	}
	return errors.Join(errs...)
}

// dropQueues deletes the queues the run declared, once every claimd using
// them has stopped (a running one would declare them again).
func (s *suite) dropQueues() {
	if len(s.queues) == 0 {
		return
	}
	if err := deleteQueues(s.cfg.RabbitURL, s.queues); err != nil {
		s.logf("RabbitMQ: %v", err)
		return
	}
	s.logf("RabbitMQ: deleted queues %s", strings.Join(s.queues, ", "))
	s.queues = nil
}

// sumMetric adds one sample (see loadkit.Metrics.Sample) over several
// processes' scrapes.
func sumMetric(ctx context.Context, procs []*claimdProc, sample string) (float64, error) {
	var sum float64
	for _, p := range procs {
		v, _, err := loadkit.ScrapeSample(ctx, p.url, sample)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// histogram is a Prometheus histogram: cumulative counts per upper bound.
type histogram struct {
	bounds []float64 // ascending, +Inf last
	counts []float64
}

// readHistogram sums the histogram name over several processes' scrapes; a
// process that has not observed anything yet may lack it.
func readHistogram(ctx context.Context, procs []*claimdProc, name string) (histogram, error) {
	byBound := map[float64]float64{}
	for _, p := range procs {
		m, err := loadkit.Scrape(ctx, p.url)
		if err != nil {
			return histogram{}, err
		}
		bounds, counts, err := m.Histogram(name)
		if err != nil {
			continue
		}
		for i, b := range bounds {
			byBound[b] += counts[i]
		}
	}
	if len(byBound) == 0 {
		return histogram{}, fmt.Errorf("no %s in the metrics", name)
	}
	h := histogram{bounds: slices.Sorted(maps.Keys(byBound))}
	for _, b := range h.bounds {
		h.counts = append(h.counts, byBound[b])
	}
	return h, nil
}

// since is the increase of h over an earlier reading of the same histogram.
func (h histogram) since(before histogram) histogram {
	out := histogram{bounds: h.bounds, counts: slices.Clone(h.counts)}
	for i, b := range h.bounds {
		if j := slices.Index(before.bounds, b); j >= 0 {
			out.counts[i] -= before.counts[j]
		}
	}
	return out
}

func (h histogram) count() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile is as Prometheus's histogram_quantile: the bucket holding the
// q-th observation, and a linear interpolation inside it (from 0 for the
// first bucket); in the +Inf bucket, the largest finite bound.
func (h histogram) quantile(q float64) float64 {
	total := h.count()
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	for i, c := range h.counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.bounds[i], 1) {
			if i == 0 {
				return math.NaN()
			}
			return h.bounds[i-1]
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = h.bounds[i-1], h.counts[i-1]
		}
		inBucket := c - below
		if inBucket <= 0 {
			return h.bounds[i]
		}
		return lower + (h.bounds[i]-lower)*(rank-below)/inBucket
	}
	return h.bounds[len(h.bounds)-1]
}

func (h histogram) quantiles() histQuantiles {
	var finite []string
	for _, b := range h.bounds {
		if !math.IsInf(b, 1) {
			finite = append(finite, strconv.FormatFloat(b*1000, 'f', -1, 64))
		}
	}
	return histQuantiles{Count: h.count(), P50: h.quantile(0.5) * 1000, P90: h.quantile(0.9) * 1000, P99: h.quantile(0.99) * 1000,
		Buckets: strings.Join(finite, ", ") + " ms"}
}

const endToEndMetric = "claimd_queue_end_to_end_seconds"

// async runs the async block (see asyncResult). A failure of the block is
// reported in the table and the rest of the stage still runs.
func (s *suite) async(ctx context.Context, st *stageResult) error {
	ar := &asyncResult{Workers: s.cfg.AsyncWorkers}
	st.Async = ar
	if !s.cfg.Async {
		ar.Skipped = "-async=false"
		return nil
	}
	conn, err := dialRabbit(s.cfg.RabbitURL)
	if err != nil {
		ar.Skipped = fmt.Sprintf("RabbitMQ unreachable at %s: %v", redactURL(s.cfg.RabbitURL), err)
		s.logf("async block skipped: %s", ar.Skipped)
		return nil
	}
	_ = conn.Close()
	err = s.asyncBlock(ctx, st, ar)
	// Stop what the block started, then delete its queues.
	for _, p := range s.procs {
		if strings.HasPrefix(p.name, "async") {
			p.stop()
		}
	}
	s.dropQueues()
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		ar.Error = err.Error()
		s.logf("async block stopped: %v", err)
	}
	return nil
}

func (s *suite) asyncBlock(ctx context.Context, st *stageResult, ar *asyncResult) error {
	ar.Queue = fmt.Sprintf("bench.%d", time.Now().UnixNano())
	s.queues = append(s.queues, rabbitQueues(ar.Queue)...)
	queueEnv := []string{"RABBITMQ_URL=" + s.cfg.RabbitURL, "RABBITMQ_QUEUE=" + ar.Queue}

	started := time.Now()
	srv, err := s.startClaimd(ctx, "async", s.redisURL(), append(queueEnv, "INGEST_MODE=async")...)
	if err != nil {
		return err
	}
	// Its start-up reconciliation pass compares every provider; it would
	// slow what is measured next.
	if err := s.waitReconciled(ctx, srv); err != nil {
		return err
	}
	ar.StartSeconds = time.Since(started).Seconds()
	srv.phase("start")

	// Accept: no worker; the claims wait in the queue. The drain is timed
	// in the load's afterLoad hook, and the same run's verification then
	// checks every accepted claim once stored.
	var (
		workers  []*claimdProc
		drainErr error
	)
	drain := func(res *loadResult) {
		srv.phase("accept (no worker)")
		ar.Backlog = res.acceptedClaims()
		s.logf("async: %d claims accepted with no worker running; starting %d claimd worker process(es) to drain them", ar.Backlog, ar.Workers)
		t0 := time.Now()
		for i := range ar.Workers {
			w, err := s.startProc(ctx, fmt.Sprintf("async-worker-%d", i+1), "worker", s.redisURL(), queueEnv...)
			if err != nil {
				drainErr = err
				return
			}
			workers = append(workers, w)
		}
		ar.WorkerStartSeconds = time.Since(t0).Seconds()
		tReady := time.Now()
		ackedReady, _ := sumMetric(ctx, workers, "claimd_queue_acked_total")
		deadline := t0.Add(s.sc.AsyncDrainWait)
		var acked float64
		for {
			acked, err = sumMetric(ctx, workers, "claimd_queue_acked_total")
			if err == nil && acked >= float64(ar.Backlog) {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				ar.DrainNote = fmt.Sprintf("only %.0f of %d claims stored after %s (last error: %v)", acked, ar.Backlog, s.sc.AsyncDrainWait, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		done := time.Now()
		ar.DrainSeconds = done.Sub(t0).Seconds()
		linesPerClaim := 4.0
		if c, l := res.ackedClaims(); c > 0 {
			linesPerClaim = float64(l) / float64(c)
		}
		stored := math.Min(acked, float64(ar.Backlog))
		if ackedReady < stored/2 && done.Sub(tReady) > 0 {
			ar.DrainClaimsPerSec = (stored - ackedReady) / done.Sub(tReady).Seconds()
		} else {
			ar.DrainClaimsPerSec, ar.DrainFromStart = stored/ar.DrainSeconds, true
		}
		ar.DrainLinesPerSec = ar.DrainClaimsPerSec * linesPerClaim
		s.logf("async: drained %.0f claims in %.2f s (workers ready after %.2f s, %.0f stored by then): %.0f claims/s", acked, ar.DrainSeconds, ar.WorkerStartSeconds, ackedReady, ar.DrainClaimsPerSec)
		srv.phase("drain")
		for _, w := range workers {
			w.phase("drain")
		}
	}
	s.logf("async accept, no worker running: %d clients, 4-line claims, %s", s.sc.SingleConc, s.sc.SingleDur)
	err = s.profile(ctx, srv, st.label()+"-async-accept", s.sc.SingleDur, func() error {
		rep, err := s.benchHooked(ctx, st.label()+" async accept + drain", runHooks{afterLoad: drain},
			append(s.ingestArgs(srv, 21), "-mode", "single", "-concurrency", strconv.Itoa(s.sc.SingleConc),
				"-duration", s.sc.SingleDur.String(), "-drain-wait", time.Minute.String())...)
		ar.Accept = rep
		return err
	})
	if err := errors.Join(err, drainErr); err != nil {
		return err
	}
	srv.phase("accept + drain: verification")
	for _, w := range workers {
		w.phase("drain: verification")
	}

	// End to end at half the sync single rate, with the worker(s) running.
	ar.E2ERate = st.HalfRate
	if ar.E2ERate < 1 {
		return fmt.Errorf("sync single ingest measured %.1f claims/s: nothing to halve", st.Single.ClaimsPerSec)
	}
	before, herr := readHistogram(ctx, workers, endToEndMetric)
	every := max(1, int(math.Round(ar.E2ERate/25))) // about 25 claims followed a second
	s.logf("async end-to-end: %.0f claims/s (open loop) with %d worker(s) running, %s; every %dth accepted claim followed to stored", ar.E2ERate, len(workers), s.sc.HalfDur, every)
	rep, err := s.bench(ctx, st.label()+" async end-to-end", append(s.ingestArgs(srv, 22), "-mode", "single",
		"-rate", strconv.FormatFloat(ar.E2ERate, 'f', 1, 64), "-max-in-flight", "256", "-duration", s.sc.HalfDur.String(),
		"-stored-sample", strconv.Itoa(every), "-drain-wait", time.Minute.String())...)
	ar.E2E = rep
	if err != nil {
		return err
	}
	after, herr2 := readHistogram(ctx, workers, endToEndMetric)
	if herr = errors.Join(herr, herr2); herr != nil {
		ar.E2EHistError = herr.Error()
	} else {
		ar.E2EHist = after.since(before).quantiles()
	}
	srv.phase("end-to-end")
	for _, w := range workers {
		w.phase("end-to-end")
	}
	ar.RSSServe = srv.stop()
	for _, w := range workers {
		ar.RSSWorker = max(ar.RSSWorker, w.stop())
	}
	ar.RSSPhases = append(ar.RSSPhases, srv.phases...)
	for _, w := range workers {
		ar.RSSPhases = append(ar.RSSPhases, w.phases...)
	}
	return nil
}
