package rank

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// Truth is where the reconciler reads the exact totals: the Postgres store.
type Truth interface {
	// TryReconcileLock takes the lock that lets one instance at a time
	// reconcile; ok is false when another instance holds it.
	TryReconcileLock(ctx context.Context) (release func(), ok bool, err error)
	// ScanTotals streams the totals changed since since (all when zero) of
	// one snapshot, in batches, and returns the truth's clock before the
	// scan: those of the all-time board and of the boards from the oldest
	// of each window kept (claim.Retention.Oldest).
	ScanTotals(ctx context.Context, since time.Time, oldest map[claim.Window]string, batchSize int, fn func([]claim.ProviderTotal) error) (time.Time, error)
	// BoardSizes says how many providers the all-time board ("") and each
	// board kept hold.
	BoardSizes(ctx context.Context, oldest map[claim.Window]string) (map[string]int64, error)
	// RankingEpoch names the truth; a Redis ranking built from another
	// truth (a database since recreated) must be rebuilt.
	RankingEpoch(ctx context.Context) (string, error)
}

// ReconcilerConfig tunes a Reconciler. Zero values take the defaults.
type ReconcilerConfig struct {
	// Interval between passes. Default DefaultReconcileInterval.
	Interval time.Duration
	// BatchSize is how many totals go to Redis in one script call. Default 2000.
	BatchSize int
	// FullEvery makes every n-th pass compare every provider, not only those
	// changed since the last pass. Default 10.
	FullEvery int
	// Overlap is how far before the last pass's start a cheap pass looks. A
	// total is stamped when its transaction starts and becomes visible when
	// it commits, so this must exceed the longest claim transaction (bounded
	// by the request deadline). Default 1m.
	Overlap time.Duration
}

// DefaultReconcileInterval is ReconcilerConfig.Interval's default.
const DefaultReconcileInterval = 30 * time.Second

// Reconciler keeps Redis equal to the Postgres totals. A cheap pass repairs
// the providers changed since the last pass; a full pass compares them all;
// when Redis has lost the set (no completeness marker) it is rebuilt aside
// and swapped in.
type Reconciler struct {
	truth   Truth
	redis   *Redis
	cfg     ReconcilerConfig
	metrics *Metrics
	log     *slog.Logger

	mu       sync.Mutex // one pass at a time within the process
	lastScan time.Time  // truth's clock before the last successful scan; zero: none yet
	passes   int
}

// NewReconciler returns a reconciler of redis against truth.
func NewReconciler(truth Truth, redis *Redis, cfg ReconcilerConfig, m *Metrics, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReconcileInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 2000
	}
	if cfg.FullEvery <= 0 {
		cfg.FullEvery = 10
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = time.Minute
	}
	for _, result := range []string{"ok", "error", "skipped"} {
		m.reconcileRuns.WithLabelValues(result) // exported at 0 from the start
	}
	return &Reconciler{truth: truth, redis: redis, cfg: cfg, metrics: m, log: log}
}

// Mode says how much a pass compares.
type Mode int

const (
	// Auto compares what changed since the last pass, everything every
	// FullEvery passes, and rebuilds when Redis lost the set.
	Auto Mode = iota
	// Compare compares every provider (and rebuilds if the set was lost).
	Compare
	// Rebuild rebuilds the whole set from the truth.
	Rebuild
)

// Result says what one pass did.
type Result struct {
	Skipped   bool        // another instance held the lock
	Rebuilt   bool        // the set was rebuilt whole
	Full      bool        // every provider was compared (or rebuilt)
	Providers int         // provider totals read from Postgres
	Repaired  int         // providers corrected in place
	Drift     claim.Cents // how far Redis was off before this pass repaired it, summed (a lost set: every total)
	Duration  time.Duration
}

// Run makes a pass at once and then every interval, until ctx is done. A
// failed pass is logged and retried at the next tick.
func (r *Reconciler) Run(ctx context.Context) {
	ticker := time.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	for {
		// A pass that hangs (a Redis or Postgres that stopped answering
		// mid-pass) must not stop the next ones.
		passCtx, cancel := context.WithTimeout(ctx, max(5*time.Minute, 2*r.cfg.Interval))
		res, err := r.RunOnce(passCtx, Auto)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Error("reconciliation failed; will retry", "err", err)
		case res.Repaired > 0 || res.Drift != 0:
			r.log.Warn("reconciliation repaired the ranking", "rebuilt", res.Rebuilt,
				"repaired", res.Repaired, "drift_cents", int64(res.Drift), "providers", res.Providers,
				"duration_seconds", res.Duration.Seconds())
		case res.Rebuilt:
			r.log.Info("reconciliation rebuilt the ranking; nothing needed repair",
				"providers", res.Providers, "duration_seconds", res.Duration.Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RunOnce runs one pass.
func (r *Reconciler) RunOnce(ctx context.Context, mode Mode) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	res, err := r.runOnce(ctx, mode)
	res.Duration = time.Since(start)
	switch {
	case err != nil:
		r.metrics.reconcileRuns.WithLabelValues("error").Inc()
	case res.Skipped:
		r.metrics.reconcileRuns.WithLabelValues("skipped").Inc()
		// Drift is the lock holder's to report; a standby must not keep
		// showing what it found when it last held the lock.
		r.metrics.drift.Set(0)
	default:
		r.metrics.reconcileRuns.WithLabelValues("ok").Inc()
		r.metrics.reconcileDuration.Observe(res.Duration.Seconds())
		r.metrics.reconcileRepaired.Add(float64(res.Repaired))
		r.metrics.driftFound.Add(float64(res.Drift))
		r.metrics.drift.Set(float64(res.Drift))
		r.metrics.reconcileLastOK.SetToCurrentTime()
		if res.Rebuilt {
			r.metrics.reconcileRebuilds.Inc()
		}
	}
	return res, err
}

func (r *Reconciler) runOnce(ctx context.Context, mode Mode) (Result, error) {
	// Read before the lock: an instance that does not reconcile must still
	// learn that the truth changed (recreated, or failed over), so that its
	// lookups stop trusting a ranking built from what was.
	epoch, err := r.truth.RankingEpoch(ctx)
	if err != nil {
		return Result{}, err
	}
	r.redis.ExpectEpoch(epoch)

	release, ok, err := r.truth.TryReconcileLock(ctx)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		// Another instance reconciles; our idea of "changed since" is stale.
		r.lastScan = time.Time{}
		return Result{Skipped: true}, nil
	}
	defer release()

	if mode != Rebuild {
		builtWith, err := r.redis.completeMarker(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("check redis ranking: %w", err)
		}
		// Lost (""), built from another database, or keeping other boards.
		if builtWith != r.redis.marker(epoch) {
			mode = Rebuild
		}
	}
	full := mode == Compare || r.lastScan.IsZero() || (r.passes+1)%r.cfg.FullEvery == 0
	if mode != Rebuild && full {
		// The versions hashes were sized for the providers of the last
		// rebuild; grown past them, they lose their compact encoding.
		sizes, err := r.truth.BoardSizes(ctx, r.redis.keep.Oldest(time.Now()))
		if err != nil {
			return Result{}, err
		}
		outgrown, err := r.redis.versionsOutgrown(ctx, sizes)
		if err != nil {
			return Result{}, fmt.Errorf("check redis ranking: %w", err)
		}
		if outgrown {
			r.log.Info("rebuilding the redis ranking: its versions hashes are sized for fewer providers", "providers", sizes[""])
			mode = Rebuild
		}
	}
	if mode == Rebuild {
		return r.rebuild(ctx, epoch)
	}

	r.passes++
	res := Result{Full: full}
	var since time.Time
	if !res.Full {
		since = r.lastScan.Add(-r.cfg.Overlap)
	}
	scanned, err := r.truth.ScanTotals(ctx, since, r.redis.keep.Oldest(time.Now()), r.cfg.BatchSize, func(batch []claim.ProviderTotal) error {
		res.Providers += len(batch)
		a, err := r.redis.apply(ctx, batch, true)
		res.Repaired += a.Changed
		res.Drift += a.Drift
		return err
	})
	if err != nil {
		return res, err
	}
	r.lastScan = scanned
	return res, nil
}

// rebuild fills a build set aside from a snapshot of the truth and swaps it
// in atomically. The build begins before the snapshot is read, so a total
// committed after the snapshot reaches the build set through Apply.
func (r *Reconciler) rebuild(ctx context.Context, epoch string) (Result, error) {
	res := Result{Rebuilt: true, Full: true}
	oldest := r.redis.keep.Oldest(time.Now())
	sizes, err := r.truth.BoardSizes(ctx, oldest)
	if err != nil {
		return res, err
	}
	boards := slices.Collect(maps.Keys(sizes))
	// Versions of builds that died or were aborted, and of a swap whose
	// clean-up failed, go before this build adds its own.
	if err := r.redis.dropOldVersions(ctx, boards); err != nil {
		return res, err
	}
	b, err := r.redis.beginBuild(ctx, sizes)
	if err != nil {
		return res, err
	}
	// Postgres is read while Redis writes the previous batches, two at a
	// time so that Redis is not idle during a round trip (the build script
	// does not care about order: it compares versions).
	writeCtx, stopWriting := context.WithCancelCause(ctx)
	defer stopWriting(nil)
	batches := make(chan []claim.ProviderTotal, 4)
	var (
		writers sync.WaitGroup
		drift   atomic.Int64
	)
	for range 2 {
		writers.Go(func() {
			for batch := range batches {
				d, err := r.redis.buildBatch(writeCtx, b, batch)
				if err != nil {
					stopWriting(err)
					for range batches { // the scan stops at its next batch
					}
					return
				}
				drift.Add(int64(d))
			}
		})
	}
	scanned, err := r.truth.ScanTotals(writeCtx, time.Time{}, oldest, r.cfg.BatchSize, func(batch []claim.ProviderTotal) error {
		res.Providers += len(batch)
		select {
		case batches <- slices.Clone(batch): // the scan reuses its slice
			return nil
		case <-writeCtx.Done():
			return context.Cause(writeCtx)
		}
	})
	close(batches)
	writers.Wait()
	res.Drift += claim.Cents(drift.Load())
	if cause := context.Cause(writeCtx); cause != nil && !errors.Is(cause, ctx.Err()) {
		err = cause // Redis failed first: say so, not "context canceled"
	}
	if err == nil {
		// Boards a write added while the build ran have versions in the
		// generation it replaces too: drop those with the others.
		var swapped []string
		swapped, err = r.redis.finishBuild(ctx, b, epoch)
		boards = append(boards, swapped...)
		slices.Sort(boards)
		boards = slices.Compact(boards)
	}
	if err != nil {
		r.redis.abortBuild(context.WithoutCancel(ctx), b)
		return res, err
	}
	if err := r.redis.dropOldVersions(ctx, boards); err != nil && ctx.Err() == nil {
		// The new set is live; the old versions go with the next rebuild
		// (also when shutting down cut this short).
		r.log.Warn("old ranking versions not deleted", "err", err)
	}
	r.lastScan = scanned
	return res, nil
}
