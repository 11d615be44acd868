package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/testenv"
)

// claimd dlq list says so in its log when the dead-letter queue is empty,
// and otherwise prints one JSON line per dead letter, with why it was
// refused in the words of claimd_queue_dead_lettered_total.
func TestDeadLetterList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	queueName := testenv.MustQueueName(t)
	env := map[string]string{"RABBITMQ_QUEUE": queueName}
	getenv := func(k string) string { return env[k] }

	var stdout, stderr bytes.Buffer
	require.NoError(t, run(ctx, []string{"dlq", "list"}, getenv, &stdout, &stderr))
	require.Empty(t, stdout.String(), "stdout holds dead letters only")
	var lines []map[string]any
	for _, line := range requireJSONLines(t, stderr.String()) {
		if line["library"] == nil { // go-redis's lines are the process's: other tests' among them
			lines = append(lines, line)
		}
	}
	require.Len(t, lines, 1, stderr.String())
	require.Equal(t, "the dead-letter queue is empty", lines[0]["msg"])
	require.Equal(t, queueName+".dead", lines[0]["queue"])

	// A message that is not a claim, refused as a worker refuses it: the
	// broker dead-letters it.
	conn, err := amqp.Dial(testenv.SharedRabbitMQURL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	id := uuid.NewString()
	require.NoError(t, ch.PublishWithContext(ctx, "", queueName, false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, MessageId: id, Body: []byte(`{"lines": [{"service_date": `),
		Headers: amqp.Table{"claimd-received-at": time.Now().UTC().Format(time.RFC3339Nano)},
	}))
	require.Eventually(t, func() bool {
		m, ok, err := ch.Get(queueName, false)
		return err == nil && ok && m.Nack(false, false) == nil
	}, 5*time.Second, 20*time.Millisecond)

	var listed []queue.DeadLetter
	require.Eventually(t, func() bool {
		stdout.Reset()
		stderr.Reset()
		if run(ctx, []string{"dlq", "list"}, getenv, &stdout, &stderr) != nil {
			return false
		}
		listed = nil
		for line := range strings.Lines(stdout.String()) {
			var dl queue.DeadLetter
			require.NoError(t, json.Unmarshal([]byte(line), &dl), "stdout is JSON lines: %q", line)
			listed = append(listed, dl)
		}
		return len(listed) == 1
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, id, listed[0].MessageID)
	require.Equal(t, "undecodable", listed[0].Reason)
	require.NotContains(t, stderr.String(), "empty")
}
