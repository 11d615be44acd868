package httpapi

import (
	"context"
	"net/http"
	"time"
)

func handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

type readiness struct {
	Status   string `json:"status"`   // ready or not_ready
	Postgres string `json:"postgres"` // ok or down
	Redis    string `json:"redis"`    // ok or degraded: lookups fall back to Postgres
	// RabbitMQ is ok or degraded (POST /claims answers 503 until it is back);
	// only in async mode.
	RabbitMQ string `json:"rabbitmq,omitempty"`
}

// handleReadyz is ready when Postgres answers. Redis being down only degrades
// the service (lookups come from Postgres), so it never fails readiness.
func handleReadyz(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		res, status := readiness{Status: "ready", Postgres: "ok", Redis: "ok"}, http.StatusOK
		if err := d.PingPostgres(ctx); err != nil {
			res.Status, res.Postgres, status = "not_ready", "down", http.StatusServiceUnavailable
		}
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer rcancel()
		if err := d.PingRedis(rctx); err != nil {
			res.Redis = "degraded"
		}
		if d.Queue != nil {
			res.RabbitMQ = "ok"
			if err := d.Queue.Ready(ctx); err != nil {
				res.RabbitMQ = "degraded"
			}
		}
		writeJSON(w, status, res)
	}
}
