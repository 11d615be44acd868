package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RateLimiter limits requests per client, with the counts kept in Redis so
// every instance shares them. The algorithm is redis_rate's GCRA.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	key     func(route, client string) string
	timeout time.Duration
}

// NewRateLimiter returns a limiter of limit requests per client, its Redis
// keys named by key. A zero limit returns nil: no limiting.
func NewRateLimiter(client *redis.Client, limit redis_rate.Limit, key func(route, client string) string) *RateLimiter {
	if limit.IsZero() {
		return nil
	}
	return &RateLimiter{limiter: redis_rate.NewLimiter(client), limit: limit, key: key, timeout: 50 * time.Millisecond}
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

// middleware limits a route. When Redis cannot answer the limiter fails open:
// the request passes and the decision is counted as "fail_open".
func (l *RateLimiter) middleware(m *metrics, route string, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if l == nil {
			return next
		}
		for _, decision := range []string{"allowed", "limited", "fail_open"} {
			m.rateLimit.WithLabelValues(route, decision) // exported at 0 from the start
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), l.timeout)
			res, err := l.limiter.Allow(ctx, l.key(route, clientOf(r)), l.limit)
			cancel()
			if err != nil {
				m.rateLimit.WithLabelValues(route, "fail_open").Inc()
				log.Warn("rate limiter unavailable; request let through", "route", route, "err", err)
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("RateLimit-Limit", strconv.Itoa(l.limit.Rate))
			w.Header().Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
			if res.Allowed == 0 {
				m.rateLimit.WithLabelValues(route, "limited").Inc()
				p := problemFor(http.StatusTooManyRequests,
					fmt.Sprintf("at most %d requests per %s; try again later", l.limit.Rate, l.limit.Period))
				p.retryAfter = int(math.Ceil(res.RetryAfter.Seconds()))
				if p.retryAfter < 1 {
					p.retryAfter = 1
				}
				writeProblem(w, p)
				return
			}
			m.rateLimit.WithLabelValues(route, "allowed").Inc()
			next.ServeHTTP(w, r)
		})
	}
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
