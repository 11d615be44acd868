package events

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the outbox relay's Prometheus metrics; one set per process.
type Metrics struct {
	unsent    prometheus.Gauge
	oldest    prometheus.Gauge
	published *prometheus.CounterVec
	failures  *prometheus.CounterVec
	active    prometheus.Gauge
}

// The labels of claimd_events_publish_failures_total.
const (
	reasonNack       = "nack"
	reasonTimeout    = "timeout"
	reasonBrokerDown = "broker_down"
	reasonUnroutable = "unroutable"
)

// NewMetrics registers the relay's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "claimd"
	m := &Metrics{
		unsent: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "outbox_unsent_events",
			Help: "Events in the outbox not yet confirmed by the broker; sampled every few seconds by every instance (take the max across instances). Grows while the broker is away.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "outbox_oldest_unsent_seconds",
			Help: "Age of the oldest event in the outbox not yet confirmed by the broker, 0 when none; sampled with outbox_unsent_events.",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "events_published_total",
			Help: "Events this instance published and the broker confirmed, by type (claim.stored, claim.reversed, other). Delivery is at least once: an event may count again after a failure.",
		}, []string{"type"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "events_publish_failures_total",
			Help: "Failed attempts to publish a batch of events, by reason: nack (the broker refused one), timeout (no confirm in time), unroutable (no queue bound to take one), broker_down (no connection, or it closed; counted per attempt to connect). The batch's events are published again.",
		}, []string{"reason"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "outbox_relay_active",
			Help: "1 while this instance holds the outbox relay's lock (one instance at a time relays), else 0.",
		}),
	}
	reg.MustRegister(m.unsent, m.oldest, m.published, m.failures, m.active)
	for _, typ := range []string{TypeStored, TypeReversed, "other"} {
		m.published.WithLabelValues(typ) // exported at 0 from the start: rates and alerts need no "absent"
	}
	for _, reason := range []string{reasonNack, reasonTimeout, reasonBrokerDown, reasonUnroutable} {
		m.failures.WithLabelValues(reason)
	}
	return m
}

// typeLabel is the type label of an event published with routingKey: one of
// a fixed set, whatever a row holds.
func typeLabel(routingKey string) string {
	switch routingKey {
	case TypeStored, TypeReversed:
		return routingKey
	}
	return "other"
}
