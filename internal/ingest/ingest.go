// Package ingest is the claim pipeline: a decoded claim is parsed and
// validated, given an id, stored in Postgres with its provider totals, and
// its providers' new totals are pushed to the Redis ranking.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/store"
)

// ClaimStore stores claims durably, whole or not at all, and keeps the
// idempotency keys that make retries safe.
type ClaimStore interface {
	InsertClaim(ctx context.Context, c claim.Claim, lease *store.KeyLease) (store.Inserted, error)
	AcquireKey(ctx context.Context, r store.KeyRequest) (*store.KeyLease, *store.KeyOutcome, error)
	ReleaseKey(ctx context.Context, lease *store.KeyLease) error
	Claim(ctx context.Context, id string) (claim.Claim, error)
}

// Ranking receives committed provider totals. Writes must be safe to repeat
// and to reorder.
type Ranking interface {
	Apply(ctx context.Context, totals []claim.ProviderTotal) (int, error)
}

// Config tunes the pipeline. Zero values take the defaults.
type Config struct {
	// Rules every claim must pass. Default claim.DefaultRules().
	Rules claim.Rules
	// RankingTimeout bounds each Redis write after a commit. Default 250ms.
	RankingTimeout time.Duration
	// KeyTTL is how long an idempotency key is remembered. Default 24h.
	KeyTTL time.Duration
	// KeyLease is how long a request holds its key before a retry may take
	// it over (the holder having died). Default 15s, above any request's deadline.
	KeyLease time.Duration
}

// Service runs claims through the pipeline.
type Service struct {
	store   ClaimStore
	ranking Ranking
	cfg     Config
	metrics *metrics
	log     *slog.Logger
}

// New returns the pipeline writing to store and ranking. Its metrics are
// registered with reg.
func New(store ClaimStore, ranking Ranking, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Rules == nil {
		cfg.Rules = claim.DefaultRules()
	}
	if cfg.RankingTimeout <= 0 {
		cfg.RankingTimeout = 250 * time.Millisecond
	}
	if cfg.KeyTTL <= 0 {
		cfg.KeyTTL = 24 * time.Hour
	}
	if cfg.KeyLease <= 0 {
		cfg.KeyLease = 15 * time.Second
	}
	return &Service{store: store, ranking: ranking, cfg: cfg, metrics: newMetrics(reg), log: log}
}

// Request is one submission of a claim.
type Request struct {
	Input claim.Input
	// Client scopes the idempotency key: keys of different clients never meet.
	Client string
	// IdempotencyKey, when not empty, makes a retry of this request return
	// the first one's outcome instead of storing the claim again.
	IdempotencyKey string
}

// Result is the outcome of a submission.
type Result struct {
	Claim claim.Claim
	// Created is true when this submission (or the one it replays) stored the
	// claim; false when the claim's external id was already stored.
	Created bool
	// Replayed is true when an earlier request with the same idempotency key
	// produced this outcome.
	Replayed bool
}

// Submit validates a claim and stores it whole, exactly once. It fails with
// claim.Problems when the claim is invalid; then nothing was stored. A claim
// whose external id is stored already, or a retry with the same idempotency
// key, returns the stored claim and changes nothing. Once the claim is
// committed Submit succeeds, even if Redis could not be updated: Postgres is
// the truth, and reconciliation repairs Redis.
func (s *Service) Submit(ctx context.Context, req Request) (Result, error) {
	lines, err := claim.Parse(req.Input, s.cfg.Rules)
	if err != nil {
		var problems claim.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				s.metrics.validationFailures.WithLabelValues(p.Rule).Inc()
			}
		}
		return Result{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Result{}, fmt.Errorf("claim id: %w", err)
	}
	// Postgres keeps microseconds; the answer shows what is stored.
	c := claim.Claim{ID: id.String(), Sender: req.Client, ExternalID: req.Input.ExternalIDText(),
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), Lines: lines}

	var lease *store.KeyLease
	if req.IdempotencyKey != "" {
		var earlier *store.KeyOutcome
		lease, earlier, err = s.store.AcquireKey(ctx, store.KeyRequest{
			Scope: req.Client, Key: req.IdempotencyKey, RequestHash: c.Fingerprint(),
			Lease: s.cfg.KeyLease, TTL: s.cfg.KeyTTL,
		})
		if err != nil {
			return Result{}, err
		}
		if earlier != nil {
			s.metrics.duplicates.WithLabelValues("idempotency_key").Inc()
			stored, err := s.store.Claim(ctx, earlier.ClaimID)
			return Result{Claim: stored, Created: earlier.Created, Replayed: true}, err
		}
	}

	ins, err := s.store.InsertClaim(ctx, c, lease)
	if err != nil {
		if lease != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if rerr := s.store.ReleaseKey(rctx, lease); rerr != nil {
				s.log.Warn("idempotency key not released; it frees itself when its lease ends", "err", rerr)
			}
		}
		return Result{}, err
	}
	if ins.ExistingID != "" {
		s.metrics.duplicates.WithLabelValues("claim_id").Inc()
		stored, err := s.store.Claim(ctx, ins.ExistingID)
		return Result{Claim: stored}, err
	}
	s.metrics.claims.Inc()
	s.metrics.lines.Add(float64(len(lines)))
	s.rank(ctx, c.ID, ins.Totals)
	return Result{Claim: c, Created: true}, nil
}

// rank pushes committed totals to Redis, retrying once. The write is
// versioned, so a retry that lands twice changes nothing. It runs on its own
// deadline so a client that hangs up does not cut it short.
func (s *Service) rank(ctx context.Context, claimID string, totals []claim.ProviderTotal) {
	ctx = context.WithoutCancel(ctx)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			s.metrics.rankingRetries.Inc()
			time.Sleep(20 * time.Millisecond)
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.RankingTimeout)
		_, err = s.ranking.Apply(actx, totals)
		cancel()
		if err == nil {
			return
		}
	}
	s.metrics.rankingFailures.Inc()
	s.log.Warn("redis ranking not updated; reconciliation will repair it", "claim_id", claimID, "err", err)
}

type metrics struct {
	claims             prometheus.Counter
	lines              prometheus.Counter
	duplicates         *prometheus.CounterVec
	validationFailures *prometheus.CounterVec
	rankingFailures    prometheus.Counter
	rankingRetries     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	const ns = "claimd"
	return &metrics{
		claims: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "claims_ingested_total",
			Help: "Claims stored in Postgres.",
		}),
		lines: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "claim_lines_ingested_total",
			Help: "Claim lines stored in Postgres.",
		}),
		duplicates: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "claims_deduplicated_total",
			Help: "Submissions answered with an already stored claim instead of storing it again, by what matched (idempotency_key or claim_id).",
		}, []string{"by"}),
		rankingRetries: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "redis_update_retries_total",
			Help: "Redis ranking writes retried after a failure.",
		}),
		validationFailures: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "validation_failures_total",
			Help: "Problems found in refused claims, by the rule that failed.",
		}, []string{"rule"}),
		rankingFailures: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "redis_update_failures_total",
			Help: "Committed claims whose provider totals could not be written to Redis; reconciliation repairs them.",
		}),
	}
}

// KeyExpirer forgets idempotency keys past their time to live.
type KeyExpirer interface {
	ExpireKeys(ctx context.Context) (int64, error)
}

// ExpireKeys deletes expired idempotency keys now and then every interval,
// until ctx is done.
func ExpireKeys(ctx context.Context, store KeyExpirer, interval time.Duration, log *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if n, err := store.ExpireKeys(ctx); err != nil && ctx.Err() == nil {
			log.Warn("expiring idempotency keys failed; will retry", "err", err)
		} else if n > 0 {
			log.Info("expired idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
