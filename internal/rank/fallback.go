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

// TopReader answers limit providers of a board from the offset-th (from 0)
// in the ranking's order: highest total first, equal totals by NPI
// descending. Both *Redis and the Postgres store are TopReaders.
type TopReader interface {
	BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, error)
}

// RankReader answers a provider's standing in a board; claim.ErrNotFound
// when it has none. Both *Redis and the Postgres store are RankReaders.
type RankReader interface {
	BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, error)
}

// Reader is a TopReader and a RankReader.
type Reader interface {
	TopReader
	RankReader
}

// keeper is a Reader that holds some boards only (see claim.Retention):
// *Redis.
type keeper interface{ Keeps(claim.Board) bool }

// Fallback reads the ranking from Redis with a short deadline and answers from
// Postgres when Redis fails, is slow, or has lost the set. A circuit breaker
// stops it from waiting on a dead Redis at every request.
type Fallback struct {
	redis     TopReader
	ranks     RankReader
	keeps     func(claim.Board) bool
	postgres  Reader
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
	for _, reason := range []string{"incomplete", "breaker_open", "timeout", "error", "retention"} {
		m.fallbacks.WithLabelValues(reason)
	}
	// Concurrent lookups of one page share Redis reads, and rank lookups
	// share rounds (see coalescer and rankRounds for the rule that keeps
	// every answer as fresh as its own read would be).
	f := &Fallback{redis: newCoalesced(redis, cfg.RedisTimeout), ranks: redis, postgres: postgres, timeout: cfg.RedisTimeout,
		pgTimeout: cfg.PostgresTimeout, metrics: m, log: log,
		fromRedis:    m.answers.WithLabelValues(string(claim.SourceRedis)),
		fromPostgres: m.answers.WithLabelValues(string(claim.SourcePostgres))}
	if r, ok := redis.(*Redis); ok {
		f.ranks = &rankRounds{redis: r, timeout: cfg.RedisTimeout}
	}
	f.keeps = func(claim.Board) bool { return true }
	if k, ok := redis.(keeper); ok {
		f.keeps = k.Keeps
	}
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

// TopProviders is BoardTop of the all-time board.
func (f *Fallback) TopProviders(ctx context.Context, offset, limit int) ([]claim.ProviderTotal, claim.Source, error) {
	return f.BoardTop(ctx, claim.AllTime, offset, limit)
}

// BoardTop answers a page of board b from Redis when it can, else from
// Postgres, and says which. A board Redis no longer keeps (see
// claim.Retention) is Postgres's alone. Each read has a deadline of its
// own, so the caller needs none.
func (f *Fallback) BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, claim.Source, error) {
	top, err := readRedis(ctx, f, b, func(ctx context.Context) ([]claim.ProviderTotal, error) {
		return f.redis.BoardTop(ctx, b, offset, limit)
	})
	if err == nil {
		f.answered(b, claim.SourceRedis)
		return top, claim.SourceRedis, nil
	}
	f.metrics.fallbacks.WithLabelValues(fallbackReason(err)).Inc()
	ctx, cancel := context.WithTimeout(ctx, f.pgTimeout)
	defer cancel()
	top, err = f.postgres.BoardTop(ctx, b, offset, limit)
	if err != nil {
		return nil, "", err
	}
	f.answered(b, claim.SourcePostgres)
	return top, claim.SourcePostgres, nil
}

// readRedis reads board b from Redis with read, through the breaker and
// with the Redis deadline, when Redis keeps b; errNotKept when it does not.
func readRedis[V any](ctx context.Context, f *Fallback, b claim.Board, read func(context.Context) (V, error)) (V, error) {
	if !f.keeps(b) {
		var none V
		return none, errNotKept
	}
	v, err := f.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		return read(ctx)
	})
	got, _ := v.(V)
	return got, err
}

// errNotKept is why a board Redis does not keep is read from Postgres.
var errNotKept = errors.New("redis does not keep this board")

// answered counts a lookup of board b answered from source.
func (f *Fallback) answered(b claim.Board, source claim.Source) {
	if source == claim.SourceRedis {
		f.fromRedis.Inc()
	} else {
		f.fromPostgres.Inc()
	}
	f.metrics.boardAnswers.WithLabelValues(string(b.Window), string(source)).Inc()
}

// ProviderRank is BoardRank in the all-time board.
func (f *Fallback) ProviderRank(ctx context.Context, npi string) (claim.Standing, claim.Source, error) {
	return f.BoardRank(ctx, claim.AllTime, npi)
}

// BoardRank answers npi's standing in board b from Redis when it can, else
// from Postgres, and says which; claim.ErrNotFound (from Redis, which holds
// every provider when it answers) when npi has none. The same breaker,
// deadlines and boards as BoardTop; its answers are counted with theirs.
func (f *Fallback) BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, claim.Source, error) {
	st, err := readRedis(ctx, f, b, func(ctx context.Context) (claim.Standing, error) {
		return f.ranks.BoardRank(ctx, b, npi)
	})
	if err == nil || errors.Is(err, claim.ErrNotFound) {
		f.answered(b, claim.SourceRedis)
		return st, claim.SourceRedis, err
	}
	f.metrics.fallbacks.WithLabelValues(fallbackReason(err)).Inc()
	ctx, cancel := context.WithTimeout(ctx, f.pgTimeout)
	defer cancel()
	st, err = f.postgres.BoardRank(ctx, b, npi)
	if err != nil && !errors.Is(err, claim.ErrNotFound) {
		return claim.Standing{}, "", err
	}
	f.answered(b, claim.SourcePostgres)
	return st, claim.SourcePostgres, err
}

func fallbackReason(err error) string {
	switch {
	case errors.Is(err, errNotKept):
		return "retention"
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
