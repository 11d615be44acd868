package queue

import (
	"time"

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

var URLs = Nodes

func WithDefaults(c Config) Config { return c.withDefaults() }

// DialError is the error of dialing every node of list (nil once one answers).
func DialError(list string) error {
	conn, _, err := Dial(Nodes(list), 0, amqp.Config{Dial: amqp.DefaultDial(time.Second)})
	if conn != nil {
		_ = conn.Close()
	}
	return err
}
