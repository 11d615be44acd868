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
)

// ClaimStore stores claims durably and reports the totals it committed.
type ClaimStore interface {
	InsertClaim(ctx context.Context, c claim.Claim) ([]claim.ProviderTotal, error)
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
	// RankingTimeout bounds the Redis write after a commit. Default 250ms.
	RankingTimeout time.Duration
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
	return &Service{store: store, ranking: ranking, cfg: cfg, metrics: newMetrics(reg), log: log}
}

// Submit validates a decoded claim and stores it whole. It fails with
// claim.Problems when the claim is invalid; then nothing was stored. Once the
// claim is committed it succeeds, even if Redis could not be updated: Postgres
// is the truth, and reconciliation repairs Redis.
func (s *Service) Submit(ctx context.Context, in claim.Input) (claim.Claim, error) {
	lines, err := claim.Parse(in, s.cfg.Rules)
	if err != nil {
		var problems claim.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				s.metrics.validationFailures.WithLabelValues(p.Rule).Inc()
			}
		}
		return claim.Claim{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return claim.Claim{}, fmt.Errorf("claim id: %w", err)
	}
	// Postgres keeps microseconds; the answer shows what is stored.
	c := claim.Claim{ID: id.String(), ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), Lines: lines}
	totals, err := s.store.InsertClaim(ctx, c)
	if err != nil {
		return claim.Claim{}, err
	}
	s.metrics.claims.Inc()
	s.metrics.lines.Add(float64(len(lines)))

	// The claim is committed: from here on the answer is success. The Redis
	// write gets its own deadline so a client that hangs up does not cut it short.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RankingTimeout)
	defer cancel()
	if _, err := s.ranking.Apply(rctx, totals); err != nil {
		s.metrics.rankingFailures.Inc()
		s.log.Warn("redis ranking not updated; reconciliation will repair it", "claim_id", c.ID, "err", err)
	}
	return c, nil
}

type metrics struct {
	claims             prometheus.Counter
	lines              prometheus.Counter
	validationFailures *prometheus.CounterVec
	rankingFailures    prometheus.Counter
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
