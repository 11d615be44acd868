package rank

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// Truth is where the reconciler reads the exact totals: the Postgres store.
type Truth interface {
	// TryReconcileLock takes the lock that lets one instance at a time
	// reconcile; ok is false when another instance holds it.
	TryReconcileLock(ctx context.Context) (release func(), ok bool, err error)
	// ScanTotals streams every provider total of one snapshot, in batches.
	ScanTotals(ctx context.Context, batchSize int, fn func([]claim.ProviderTotal) error) error
}

// ReconcilerConfig tunes a Reconciler. Zero values take the defaults.
type ReconcilerConfig struct {
	// Interval between passes. Default 30s.
	Interval time.Duration
	// BatchSize is how many totals go to Redis in one script call. Default 1000.
	BatchSize int
}

// Reconciler copies the Postgres totals into Redis wherever they differ, and
// rebuilds the whole set when Redis has lost it.
type Reconciler struct {
	truth   Truth
	redis   *Redis
	cfg     ReconcilerConfig
	metrics *Metrics
	log     *slog.Logger
}

// NewReconciler returns a reconciler of redis against truth.
func NewReconciler(truth Truth, redis *Redis, cfg ReconcilerConfig, m *Metrics, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	return &Reconciler{truth: truth, redis: redis, cfg: cfg, metrics: m, log: log}
}

// Result says what one pass did.
type Result struct {
	Skipped   bool // another instance held the lock
	Rebuilt   bool // the set was rebuilt whole
	Providers int  // provider totals read from Postgres
	Repaired  int  // providers corrected in place (a pass that did not rebuild)
	Duration  time.Duration
}

// Start runs a pass at once and then every interval, until ctx is done. A
// failed pass is logged and retried at the next tick.
func (r *Reconciler) Start(ctx context.Context) {
	ticker := time.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	for {
		res, err := r.RunOnce(ctx, false)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Error("reconciliation failed", "err", err)
		case res.Rebuilt || res.Repaired > 0:
			r.log.Info("reconciliation repaired the ranking", "rebuilt", res.Rebuilt,
				"repaired", res.Repaired, "providers", res.Providers, "duration", res.Duration)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RunOnce runs one pass. It rebuilds the set when full is true or when Redis
// has lost it; otherwise it corrects each provider that differs.
func (r *Reconciler) RunOnce(ctx context.Context, full bool) (Result, error) {
	start := time.Now()
	res, err := r.runOnce(ctx, full)
	res.Duration = time.Since(start)
	switch {
	case err != nil:
		r.metrics.reconcileRuns.WithLabelValues("error").Inc()
	case res.Skipped:
		r.metrics.reconcileRuns.WithLabelValues("skipped").Inc()
	default:
		r.metrics.reconcileRuns.WithLabelValues("ok").Inc()
		r.metrics.reconcileDuration.Observe(res.Duration.Seconds())
		r.metrics.reconcileRepaired.Add(float64(res.Repaired))
		r.metrics.reconcileLastOK.SetToCurrentTime()
		if res.Rebuilt {
			r.metrics.reconcileRebuilds.Inc()
		}
	}
	return res, err
}

func (r *Reconciler) runOnce(ctx context.Context, full bool) (Result, error) {
	release, ok, err := r.truth.TryReconcileLock(ctx)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{Skipped: true}, nil
	}
	defer release()

	if !full {
		complete, err := r.redis.Complete(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("check redis ranking: %w", err)
		}
		full = !complete
	}
	if full {
		return r.rebuild(ctx)
	}

	var res Result
	err = r.truth.ScanTotals(ctx, r.cfg.BatchSize, func(batch []claim.ProviderTotal) error {
		res.Providers += len(batch)
		n, err := r.redis.Apply(ctx, batch)
		res.Repaired += n
		return err
	})
	return res, err
}

// rebuild fills a build set aside from a snapshot of the truth and swaps it
// in atomically. The build begins before the snapshot is read, so a total
// committed after the snapshot reaches the build set through Apply.
func (r *Reconciler) rebuild(ctx context.Context) (Result, error) {
	res := Result{Rebuilt: true}
	if err := r.redis.beginBuild(ctx); err != nil {
		return res, err
	}
	err := r.truth.ScanTotals(ctx, r.cfg.BatchSize, func(batch []claim.ProviderTotal) error {
		res.Providers += len(batch)
		return r.redis.applyToBuild(ctx, batch)
	})
	if err == nil {
		err = r.redis.finishBuild(ctx)
	}
	if err != nil {
		r.redis.abortBuild(context.WithoutCancel(ctx))
		return res, err
	}
	return res, nil
}
