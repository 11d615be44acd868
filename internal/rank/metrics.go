package rank

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the ranking's Prometheus metrics.
type Metrics struct {
	answers           *prometheus.CounterVec
	boardAnswers      *prometheus.CounterVec
	fallbacks         *prometheus.CounterVec
	breakerState      prometheus.Gauge
	reconcileRuns     *prometheus.CounterVec
	reconcileDuration prometheus.Histogram
	reconcileRepaired prometheus.Counter
	reconcileRebuilds prometheus.Counter
	reconcileLastOK   prometheus.Gauge
	drift             prometheus.Gauge
	driftFound        prometheus.Counter
}

// NewMetrics creates the ranking's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns = "claimd"
	return &Metrics{
		boardAnswers: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "board_lookups_total",
			Help: "Ranking lookups (/top-providers and /providers/{npi}) by the window of their board (all: the all-time boards, the default) and the source that answered.",
		}, []string{"window", "source"}),
		answers: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "top_providers_answers_total",
			Help: "Top-providers answers, by the source that answered (redis or postgres).",
		}, []string{"source"}),
		fallbacks: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "top_providers_fallbacks_total",
			Help: "Ranking lookups answered from Postgres, by why Redis did not answer (retention: a board past RANK_RETENTION, which Redis no longer keeps).",
		}, []string{"reason"}),
		breakerState: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "redis_breaker_state",
			Help: "State of the circuit breaker in front of Redis ranking reads: 0 closed, 1 half-open, 2 open.",
		}),
		reconcileRuns: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "reconcile_runs_total",
			Help: "Reconciliation passes, by result (ok, error, or skipped when another instance held the lock).",
		}, []string{"result"}),
		reconcileDuration: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "reconcile_duration_seconds",
			Help:    "Duration of reconciliation passes that ran.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		reconcileRepaired: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "reconcile_repaired_providers_total",
			Help: "Providers whose Redis score or version a reconciliation pass corrected.",
		}),
		reconcileRebuilds: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "reconcile_rebuilds_total",
			Help: "Full rebuilds of the Redis ranking from the Postgres totals.",
		}),
		drift: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "ranking_drift_cents",
			Help: "How far Redis scores were from the Postgres totals at the last reconciliation pass, summed over providers, in cents; 0 when all is well.",
		}),
		driftFound: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "ranking_drift_repaired_cents_total",
			Help: "Drift between Redis scores and Postgres totals found and repaired by reconciliation, in cents.",
		}),
		reconcileLastOK: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the last reconciliation pass that succeeded.",
		}),
	}
}
