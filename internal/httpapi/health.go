package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// Dependency is one thing /readyz asks about.
type Dependency struct {
	Name string // the field of the answer: postgres, redis, rabbitmq
	Ping func(context.Context) error
	// Required: while it fails the instance is not ready and the field says
	// "down". Otherwise the instance works on without it and says "degraded".
	Required bool
	// Timeout bounds the ping; 0 gives it the whole check's 2 s.
	Timeout time.Duration
}

// handleReadyz answers {"status": "ready" or "not_ready", <dependency>: "ok",
// "down" or "degraded", ...}: 200 when every required dependency answers,
// 503 when one does not.
func handleReadyz(deps []Dependency) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		res, status := map[string]string{"status": "ready"}, http.StatusOK
		for _, d := range deps {
			res[d.Name] = "ok"
			if err := ping(ctx, d); err == nil {
				continue
			}
			if !d.Required {
				res[d.Name] = "degraded"
				continue
			}
			res["status"], res[d.Name], status = "not_ready", "down", http.StatusServiceUnavailable
		}
		writeJSON(w, status, res)
	}
}

func ping(ctx context.Context, d Dependency) error {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	return d.Ping(ctx)
}

// Readiness is what the API's /readyz asks: Postgres must answer; without
// Redis lookups fall back to Postgres, and without RabbitMQ (async mode only)
// POST /claims answers 503 until it is back: both only degrade the service.
func Readiness(d Deps) []Dependency {
	deps := []Dependency{
		{Name: "postgres", Ping: d.PingPostgres, Required: true},
		{Name: "redis", Ping: d.PingRedis, Timeout: 200 * time.Millisecond},
	}
	if d.Queue != nil {
		deps = append(deps, Dependency{Name: "rabbitmq", Ping: d.Queue.Ready})
	}
	return deps
}

// NewOpsServer serves what operators ask of a process without the API (a
// worker): /metrics, /healthz, and /readyz over deps.
func NewOpsServer(reg *prometheus.Registry, deps ...Dependency) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", MetricsHandler(reg))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(deps))
	return mux
}
