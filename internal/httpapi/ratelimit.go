package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// RateLimiter limits requests per client, with the counts kept in Redis so
// every instance shares them. The algorithm is redis_rate's GCRA.
//
// When Redis cannot answer in time (down, or slowed by the very load the
// limit is there for) the limiter fails safe, not open: each instance then
// limits each client on its own, in memory, at the same rate (a token
// bucket of the same burst: x/time/rate), so a client gets at most the limit
// from every instance while Redis is out. It logs that once per
// fallbackLogEvery, not once per request.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	key     func(route, client string) string
	timeout time.Duration

	// local holds the in-memory limiters of the clients seen while Redis
	// was out, the least recently used dropped past localClients (clients
	// are addresses when no API keys are configured: any number of them).
	local      *lru.Cache[string, *rate.Limiter]
	lastLogged atomic.Int64 // unix nanoseconds of the last fallback log line
	fellBack   atomic.Int64 // decisions made locally since that line
}

const (
	localClients     = 10_000
	fallbackLogEvery = time.Minute
)

// NewRateLimiter returns a limiter of limit requests per client, its Redis
// keys named by key. A zero limit returns nil: no limiting.
func NewRateLimiter(client redis.UniversalClient, limit redis_rate.Limit, key func(route, client string) string) *RateLimiter {
	if limit.IsZero() {
		return nil
	}
	local, err := lru.New[string, *rate.Limiter](localClients)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &RateLimiter{limiter: redis_rate.NewLimiter(client), limit: limit, key: key,
		timeout: 50 * time.Millisecond, local: local}
}

// allowLocally decides for client in this instance alone: whether the
// request may pass, and when to retry if not.
func (l *RateLimiter) allowLocally(key string) (bool, time.Duration) {
	lim, ok := l.local.Get(key)
	if !ok {
		every := l.limit.Period / time.Duration(l.limit.Rate)
		lim = rate.NewLimiter(rate.Every(every), l.limit.Burst)
		if prev, found, _ := l.local.PeekOrAdd(key, lim); found {
			lim = prev
		}
	}
	r := lim.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// noteFallback counts a local decision and logs, at most once per
// fallbackLogEvery, that decisions are local and how many were made.
func (l *RateLimiter) noteFallback(log *slog.Logger, route string, err error) {
	n := l.fellBack.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLogged.Load()
	if now-last < int64(fallbackLogEvery) || !l.lastLogged.CompareAndSwap(last, now) {
		return
	}
	l.fellBack.Add(-n)
	log.Warn("rate limiter cannot reach Redis; limiting each client in this instance alone",
		"route", route, "decisions", n, "err", err)
}

// ParseRateLimit reads a rate such as "10/min", "100/s" or "5000/h". "0"
// (or "off") turns limiting off and returns the zero Limit.
func ParseRateLimit(s string) (redis_rate.Limit, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "0" || s == "off" || s == "" {
		return redis_rate.Limit{}, nil
	}
	count, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if !ok || err != nil || n < 0 {
		return redis_rate.Limit{}, fmt.Errorf("rate %q: expected N/s, N/min or N/h, or 0 for no limit", s)
	}
	if n == 0 {
		return redis_rate.Limit{}, nil
	}
	switch strings.TrimSpace(unit) {
	case "s", "sec", "second":
		return redis_rate.PerSecond(n), nil
	case "m", "min", "minute":
		return redis_rate.PerMinute(n), nil
	case "h", "hour":
		return redis_rate.PerHour(n), nil
	}
	return redis_rate.Limit{}, fmt.Errorf("rate %q: unit must be s, min or h", s)
}

// The decisions counted in claimd_rate_limit_decisions_total: by Redis, or
// by this instance alone while Redis cannot answer.
var rateLimitDecisions = []string{"allowed", "limited", "local_allowed", "local_limited"}

// middleware limits a route.
func (l *RateLimiter) middleware(m *metrics, route string, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if l == nil {
			return next
		}
		for _, decision := range rateLimitDecisions {
			m.rateLimit.WithLabelValues(route, decision) // exported at 0 from the start
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := l.key(route, clientOf(r))
			ctx, cancel := context.WithTimeout(r.Context(), l.timeout)
			res, err := l.limiter.Allow(ctx, key, l.limit)
			cancel()
			if err != nil {
				l.noteFallback(log, route, err)
				if ok, retry := l.allowLocally(key); !ok {
					m.rateLimit.WithLabelValues(route, "local_limited").Inc()
					l.refuse(w, retry)
					return
				}
				m.rateLimit.WithLabelValues(route, "local_allowed").Inc()
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("RateLimit-Limit", strconv.Itoa(l.limit.Rate))
			w.Header().Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
			if res.Allowed == 0 {
				m.rateLimit.WithLabelValues(route, "limited").Inc()
				l.refuse(w, res.RetryAfter)
				return
			}
			m.rateLimit.WithLabelValues(route, "allowed").Inc()
			next.ServeHTTP(w, r)
		})
	}
}

// refuse answers 429, retry after the given wait (at least a second).
func (l *RateLimiter) refuse(w http.ResponseWriter, retry time.Duration) {
	p := problemFor(http.StatusTooManyRequests,
		fmt.Sprintf("at most %d requests per %s; try again later", l.limit.Rate, l.limit.Period))
	p.retryAfter = retrySeconds(retry)
	writeProblem(w, p)
}

// clientAddr identifies the client by the address it connected from. Headers
// such as X-Forwarded-For are not trusted: any client could forge them.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
