package rank

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/claim-process/claim-process/internal/claim"
)

// TopReader answers limit providers from the offset-th (from 0) in the
// ranking's order: highest total first, equal totals by NPI descending.
// Both *Redis and the Postgres store are TopReaders.
type TopReader interface {
	TopProviders(ctx context.Context, offset, limit int) ([]claim.ProviderTotal, error)
}

// RankReader answers a provider's standing; claim.ErrNotFound when it has
// none. Both *Redis and the Postgres store are RankReaders.
type RankReader interface {
	ProviderRank(ctx context.Context, npi string) (claim.Standing, error)
}

// Reader is a TopReader and a RankReader.
type Reader interface {
	TopReader
	RankReader
}

// BoardReader answers the boards other than the all-time ranking of every
// plan: the Postgres store.
type BoardReader interface {
	BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, error)
	BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, error)
}

// Fallback reads the ranking from Redis with a short deadline and answers from
// Postgres when Redis fails, is slow, or has lost the set. A circuit breaker
// stops it from waiting on a dead Redis at every request.
type Fallback struct {
	redis     TopReader
	ranks     RankReader // Redis's, uncoalesced
	postgres  Reader
	boards    BoardReader // postgres's, when it reads boards
	timeout   time.Duration
	pgTimeout time.Duration
	breaker   *gobreaker.CircuitBreaker[any]
	metrics   *Metrics
	log       *slog.Logger
	// The answers' counters, resolved once: every lookup counts one.
	fromRedis, fromPostgres prometheus.Counter
}

// FallbackConfig tunes a Fallback. Zero values take the defaults.
type FallbackConfig struct {
	// RedisTimeout bounds one Redis read. Default 50ms.
	RedisTimeout time.Duration
	// PostgresTimeout bounds one Postgres read, when Redis could not answer.
	// Default 5s.
	PostgresTimeout time.Duration
	// BreakerFailures is how many Redis failures in a row open the breaker. Default 5.
	BreakerFailures uint32
	// BreakerOpenFor is how long the breaker stays open before one trial
	// request may try Redis again. Default 5s.
	BreakerOpenFor time.Duration
}

// NewFallback returns a reader that prefers redis and falls back to postgres.
func NewFallback(redis, postgres Reader, cfg FallbackConfig, m *Metrics, log *slog.Logger) *Fallback {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.RedisTimeout <= 0 {
		cfg.RedisTimeout = 50 * time.Millisecond
	}
	if cfg.PostgresTimeout <= 0 {
		cfg.PostgresTimeout = 5 * time.Second
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = 5 * time.Second
	}
	// Every source and reason is exported at 0 from the start, so a ratio
	// or an alert over them has a series to read before the first fallback.
	for _, source := range []claim.Source{claim.SourceRedis, claim.SourcePostgres} {
		m.answers.WithLabelValues(string(source))
	}
	for _, reason := range []string{"incomplete", "breaker_open", "timeout", "error"} {
		m.fallbacks.WithLabelValues(reason)
	}
	// Concurrent lookups share Redis reads (see coalesced for the rule that
	// keeps every answer as fresh as its own read would be).
	f := &Fallback{redis: newCoalesced(redis, cfg.RedisTimeout), ranks: redis, postgres: postgres, timeout: cfg.RedisTimeout,
		pgTimeout: cfg.PostgresTimeout, metrics: m, log: log,
		fromRedis:    m.answers.WithLabelValues(string(claim.SourceRedis)),
		fromPostgres: m.answers.WithLabelValues(string(claim.SourcePostgres))}
	f.boards, _ = postgres.(BoardReader)
	for _, w := range claim.Windows {
		for _, source := range []claim.Source{claim.SourceRedis, claim.SourcePostgres} {
			m.boardAnswers.WithLabelValues(string(w), string(source))
		}
	}
	m.breakerState.Set(float64(gobreaker.StateClosed))
	f.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "redis-ranking",
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
		// A set that is incomplete, or a provider it does not hold, is Redis
		// answering correctly: not a failure.
		IsSuccessful: func(err error) bool {
			return err == nil || errors.Is(err, ErrIncomplete) || errors.Is(err, claim.ErrNotFound)
		},
		// A caller that gave up says nothing about Redis.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			m.breakerState.Set(float64(to))
			log.Warn("redis ranking circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	return f
}

// TopProviders answers from Redis when it can, else from Postgres, and says
// which. Each read has a deadline of its own, so the caller needs none.
func (f *Fallback) TopProviders(ctx context.Context, offset, limit int) ([]claim.ProviderTotal, claim.Source, error) {
	v, err := f.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		return f.redis.TopProviders(ctx, offset, limit)
	})
	if err == nil {
		f.fromRedis.Inc()
		top, _ := v.([]claim.ProviderTotal)
		return top, claim.SourceRedis, nil
	}
	f.metrics.fallbacks.WithLabelValues(fallbackReason(err)).Inc()
	ctx, cancel := context.WithTimeout(ctx, f.pgTimeout)
	defer cancel()
	top, err := f.postgres.TopProviders(ctx, offset, limit)
	if err != nil {
		return nil, "", err
	}
	f.fromPostgres.Inc()
	return top, claim.SourcePostgres, nil
}

// ProviderRank answers npi's standing from Redis when it can, else from
// Postgres, and says which; claim.ErrNotFound (from Redis, which holds every
// provider when it answers) when npi has none. The same breaker and
// deadlines as TopProviders; its answers are counted with theirs.
func (f *Fallback) ProviderRank(ctx context.Context, npi string) (claim.Standing, claim.Source, error) {
	v, err := f.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		return f.ranks.ProviderRank(ctx, npi)
	})
	switch {
	case err == nil:
		f.fromRedis.Inc()
		st, _ := v.(claim.Standing)
		return st, claim.SourceRedis, nil
	case errors.Is(err, claim.ErrNotFound):
		f.fromRedis.Inc()
		return claim.Standing{}, claim.SourceRedis, err
	}
	f.metrics.fallbacks.WithLabelValues(fallbackReason(err)).Inc()
	ctx, cancel := context.WithTimeout(ctx, f.pgTimeout)
	defer cancel()
	st, err := f.postgres.ProviderRank(ctx, npi)
	if err != nil && !errors.Is(err, claim.ErrNotFound) {
		return claim.Standing{}, "", err
	}
	f.fromPostgres.Inc()
	return st, claim.SourcePostgres, err
}

func fallbackReason(err error) string {
	switch {
	case errors.Is(err, ErrIncomplete):
		return "incomplete"
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return "breaker_open"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}

// errNoBoards is the error of a board lookup where Postgres reads none.
var errNoBoards = errors.New("this store answers no boards but the all-time one")

// BoardTop answers a page of board b (any but claim.AllTime). The boards
// other than the all-time one are kept in Postgres, which answers them.
func (f *Fallback) BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, claim.Source, error) {
	if f.boards == nil {
		return nil, "", errNoBoards
	}
	ctx, cancel := context.WithTimeout(ctx, f.pgTimeout)
	defer cancel()
	top, err := f.boards.BoardTop(ctx, b, offset, limit)
	if err != nil {
		return nil, "", err
	}
	f.metrics.boardAnswers.WithLabelValues(string(b.Window), string(claim.SourcePostgres)).Inc()
	return top, claim.SourcePostgres, nil
}

// BoardRank answers npi's standing in board b (see BoardTop);
// claim.ErrNotFound when it has no claims there.
func (f *Fallback) BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, claim.Source, error) {
	if f.boards == nil {
		return claim.Standing{}, "", errNoBoards
	}
	ctx, cancel := context.WithTimeout(ctx, f.pgTimeout)
	defer cancel()
	st, err := f.boards.BoardRank(ctx, b, npi)
	if err != nil && !errors.Is(err, claim.ErrNotFound) {
		return claim.Standing{}, "", err
	}
	f.metrics.boardAnswers.WithLabelValues(string(b.Window), string(claim.SourcePostgres)).Inc()
	return st, claim.SourcePostgres, err
}
