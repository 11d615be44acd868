package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
)

// TestRabbitServerKeepsMessagesAcrossKill checks the RabbitServer helper
// itself (it is not one of the FAULTS scenarios): confirmed persistent
// messages in a durable quorum queue survive a SIGKILL and a graceful stop.
func TestRabbitServerKeepsMessagesAcrossKill(t *testing.T) {
	const queue = "faulttest.durable"
	want := []string{"one", "two", "three"}
	start := time.Now()
	rs := StartRabbit(t)
	t.Logf("StartRabbit took %s", time.Since(start).Round(time.Millisecond))
	require.True(t, rs.Running())

	conn, err := amqp.Dial(rs.URL())
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	// A kill sooner than this after the declaration empties the queue
	// (a RabbitMQ property, see RabbitQueueSettleTime).
	time.Sleep(RabbitQueueSettleTime)
	require.NoError(t, ch.Confirm(false))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, body := range want {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "text/plain", Body: []byte(body)})
		require.NoError(t, err)
		acked, err := dc.WaitContext(ctx)
		require.NoError(t, err)
		require.True(t, acked, "message %q nacked", body)
	}
	require.NoError(t, conn.Close())

	start = time.Now()
	rs.Kill()
	t.Logf("Kill took %s", time.Since(start).Round(time.Millisecond))
	require.False(t, rs.Running())
	_, err = amqp.DialConfig(rs.URL(), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
	require.Error(t, err, "dialing a killed node")

	start = time.Now()
	rs.Start()
	t.Logf("Start after Kill took %s", time.Since(start).Round(time.Millisecond))
	requireQueueHolds(t, rs, queue, want)

	start = time.Now()
	rs.Stop()
	t.Logf("Stop took %s", time.Since(start).Round(time.Millisecond))
	require.False(t, rs.Running())
	_, err = amqp.DialConfig(rs.URL(), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
	require.Error(t, err, "dialing a stopped node")

	start = time.Now()
	rs.Start()
	t.Logf("Start after Stop took %s", time.Since(start).Round(time.Millisecond))
	requireQueueHolds(t, rs, queue, want)
}

// requireQueueHolds checks that queue holds exactly the messages want. It
// reads them without acknowledging them, so they stay in the queue.
func requireQueueHolds(t *testing.T, rs *RabbitServer, queue string, want []string) {
	t.Helper()
	conn, err := amqp.Dial(rs.URL())
	require.NoError(t, err)
	defer conn.Close()
	// Right after a boot the quorum queue may still be electing its leader:
	// a failed declare closes the channel, so each try gets a new one.
	var q amqp.Queue
	waitFor(t, 10*time.Second, "queue "+queue+" to hold its messages", func() error {
		ch, err := conn.Channel()
		if err != nil {
			return proc.Stop(err)
		}
		defer ch.Close()
		q, err = ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
		if err != nil {
			return err
		}
		if q.Messages != len(want) {
			return fmt.Errorf("queue holds %d messages, want %d", q.Messages, len(want))
		}
		return nil
	})

	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close() // requeues the unacknowledged messages
	var got []string
	for range want {
		msg, ok, err := ch.Get(queue, false)
		require.NoError(t, err)
		require.True(t, ok, "queue %s ran out after %d messages", queue, len(got))
		require.Equal(t, uint8(amqp.Persistent), msg.DeliveryMode)
		got = append(got, string(msg.Body))
	}
	require.ElementsMatch(t, want, got)
}
