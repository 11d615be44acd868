package testenv

import (
	"fmt"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// SharedRabbitMQURL is the shared RabbitMQ: TEST_RABBITMQ_URL, by default
// this machine's.
func SharedRabbitMQURL() string {
	if u := os.Getenv("TEST_RABBITMQ_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// MustQueueName returns a queue name of this test's own on the shared
// RabbitMQ; the queue and its dead-letter queue (name + ".dead") are
// deleted when the test ends.
func MustQueueName(t testing.TB) string {
	t.Helper()
	conn, err := amqp.Dial(SharedRabbitMQURL())
	require.NoError(t, err, "RabbitMQ must run at %s (see README)", SharedRabbitMQURL())
	name := fmt.Sprintf("claimd-test.%d.%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		defer conn.Close()
		for _, q := range []string{name, name + ".dead"} {
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			_, _ = ch.QueueDelete(q, false, false, false)
			_ = ch.Close()
		}
	})
	return name
}

// MustEventsExchange returns an events exchange and queue (EVENTS_EXCHANGE,
// EVENTS_QUEUE) no other test uses on the shared RabbitMQ; both are deleted
// when the test ends.
func MustEventsExchange(t testing.TB) (exchange, queue string) {
	t.Helper()
	conn, err := amqp.Dial(SharedRabbitMQURL())
	require.NoError(t, err, "RabbitMQ must run at %s (see README)", SharedRabbitMQURL())
	name := fmt.Sprintf("claimd-test.%d.%d.events", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		_, _ = ch.QueueDelete(name, false, false, false)
		_ = ch.ExchangeDelete(name, false, false)
	})
	return name, name
}
