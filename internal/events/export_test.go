package events

import "github.com/prometheus/client_golang/prometheus/testutil"

// Test hooks.

func (m *Metrics) Unsent() float64       { return testutil.ToFloat64(m.unsent) }
func (m *Metrics) OldestUnsent() float64 { return testutil.ToFloat64(m.oldest) }
func (m *Metrics) Active() float64       { return testutil.ToFloat64(m.active) }
func (m *Metrics) Published(typ string) float64 {
	return testutil.ToFloat64(m.published.WithLabelValues(typ))
}
func (m *Metrics) Failures(reason string) float64 {
	return testutil.ToFloat64(m.failures.WithLabelValues(reason))
}

// Standbys counts the lock attempts that found another instance relaying.
func (r *Relay) Standbys() int64 { return r.standbys.Load() }

func WithDefaults(c RelayConfig) RelayConfig { return c.withDefaults() }
