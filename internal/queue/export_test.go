package queue

import (
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/claim"
)

// Test hooks.

func (m *Metrics) DeadLettered(reason string) prometheus.Counter {
	return m.deadLettered.WithLabelValues(reason)
}

func (m *Metrics) Requeued() prometheus.Counter { return m.requeued }

// MessageOf is the delivery of the message Enqueue publishes for c.
func MessageOf(c claim.Claim, idempotencyKey string) (amqp.Delivery, error) {
	p, err := newMessage(c, idempotencyKey)
	return amqp.Delivery{MessageId: p.MessageId, Headers: p.Headers, Body: p.Body, ContentType: p.ContentType}, err
}

var Decode = decodeMessage
