package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	rateLimit *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	const ns = "claimd"
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			// Also a native histogram, for a Prometheus that scrapes them
			// (finer quantiles at no cost in series); classic buckets stay.
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"route", "method"}),
		rateLimit: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "rate_limit_decisions_total",
			Help: "Rate-limit decisions, by route and decision: allowed and limited by the limit shared through Redis; local_allowed and local_limited by this instance alone, while Redis could not answer.",
		}, []string{"route", "decision"}),
	}
}

// instrument counts and times every request by its route pattern (never the
// raw path, which would carry claim ids) and writes one access log line
// naming the client (an API key's id, never the key; or the address it
// connected from), so that every read of a claim can be audited. Every label
// takes its values from a fixed set, whatever a request carries: methods
// other than the standard ones are "other", a path no route matched is
// "unmatched", and the codes are those the handlers write.
//
// Successful lookups of /top-providers, which carry nothing about a claim
// and come by the tens of thousands a second, are logged one in
// lookupSample (1 logs every one); every other request is always logged.
func instrument(m *metrics, log *slog.Logger, lookupSample int) func(http.Handler) http.Handler {
	var (
		series  sync.Map // seriesKey -> *requestSeries, resolved once per label set
		lookups atomic.Uint64
	)
	resolve := func(k seriesKey) *requestSeries {
		if s, ok := series.Load(k); ok {
			return s.(*requestSeries)
		}
		s, _ := series.LoadOrStore(k, &requestSeries{
			count:    m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.status)),
			duration: m.duration.WithLabelValues(k.route, k.method),
		})
		return s.(*requestSeries)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			elapsed := time.Since(start)

			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = "unmatched"
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			method := methodLabel(r.Method)
			s := resolve(seriesKey{route, method, status})
			s.count.Inc()
			s.duration.Observe(elapsed.Seconds())
			switch {
			case route == "/metrics" || route == "/healthz" || route == "/readyz":
				return
			case (route == "/top-providers" || route == "/providers/{npi}") && status < 400 && !sampled(&lookups, lookupSample):
				return
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", method), slog.String("route", route),
				slog.Int("status", status), slog.Float64("duration_seconds", elapsed.Seconds()),
				slog.Int("bytes", ww.BytesWritten()),
				slog.String("client", clientOf(r)),
				slog.String("request_id", requestIDOf(r.Context())))
		})
	}
}

// sampled says whether this event, counted by c, is one of one in n: the
// first, then every nth.
func sampled(c *atomic.Uint64, n int) bool { return n <= 1 || (c.Add(1)-1)%uint64(n) == 0 }

// seriesKey names one request counter and duration histogram by their labels.
type seriesKey struct {
	route, method string
	status        int
}

type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// methodLabel is the method as a metric label: one of the standard methods,
// or "other" for whatever else a client sends.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// maxRequestIDLength bounds the X-Request-Id a client may choose.
const maxRequestIDLength = 64

// requestTag is what the first middleware learns of a request: its id and
// the client that sent it. One context value carries both.
type requestTag struct{ id, client string }

type requestTagKey struct{}

// tagRequest gives each request an id for its log lines, sent back as
// X-Request-Id, and records which client sent it (see APIKeys.client). A
// client's own X-Request-Id is kept when it is 1 to 64 characters of
// letters, digits and "-_.:"; any other is replaced, so nothing a client
// sends reaches the logs unchecked.
func tagRequest(keys *APIKeys) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(middleware.RequestIDHeader)
			if !validRequestID(id) {
				id = newRequestID()
			}
			w.Header().Set(middleware.RequestIDHeader, id)
			tag := &requestTag{id: id, client: keys.client(r)}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestTagKey{}, tag)))
		})
	}
}

// requestIDOf is the id tagRequest gave the request.
func requestIDOf(ctx context.Context) string {
	if t, ok := ctx.Value(requestTagKey{}).(*requestTag); ok {
		return t.id
	}
	return ""
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// newRequestID is 16 random bytes in hex. An id needs to be unique, not
// secret: math/rand/v2 draws them without a system call.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// recoverPanics turns a panic in a handler into a 500 and a log line.
func recoverPanics(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "handler panicked", "panic", v, "stack", string(debug.Stack()))
					writeProblem(w, problemFor(http.StatusInternalServerError, "internal error"))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// deadline bounds the work of each request; the layers below give up when
// the context ends, and the error maps to a 503 with Retry-After.
func deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
