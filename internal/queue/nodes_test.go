package queue_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/testenv"
)

// RABBITMQ_URL is one URL or a comma-separated list of a cluster's nodes.
func TestURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"amqp://guest:guest@127.0.0.1:5672/", []string{"amqp://guest:guest@127.0.0.1:5672/"}},
		{"amqp://a:5672/,amqp://b:5673/", []string{"amqp://a:5672/", "amqp://b:5673/"}},
		{" amqp://a/ ,\tamqp://b/, ,amqp://c/,", []string{"amqp://a/", "amqp://b/", "amqp://c/"}},
		{"amqp://u:p%2Cq@a/", []string{"amqp://u:p%2Cq@a/"}}, // a comma in a password is escaped
		{"", []string{""}}, // dialing it says what is wrong
	} {
		require.Equal(t, tc.want, queue.URLs(tc.in), "%q", tc.in)
	}
}

// Replicas default to 3 with several nodes; with one the argument is left
// out, so queues declared before clusters stay valid.
func TestReplicasDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url      string
		replicas int
		want     int
	}{
		{"amqp://a/", 0, 0},
		{"amqp://a/,amqp://b/", 0, queue.DefaultReplicas},
		{"amqp://a/,amqp://b/,amqp://c/,amqp://d/", 0, queue.DefaultReplicas},
		{"amqp://a/,amqp://b/", 5, 5},
		{"amqp://a/", 2, 2},
		{"amqp://a/,amqp://b/", -1, -1}, // left out
	} {
		got := queue.WithDefaults(queue.Config{URL: tc.url, Replicas: tc.replicas}).Replicas
		require.Equal(t, tc.want, got, "%q with Replicas %d", tc.url, tc.replicas)
	}
}

// When no node answers, the error names each by host and port and never
// shows a password, not even of a URL that does not parse.
func TestDialErrorHidesPasswords(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t)
	err := queue.DialError(fmt.Sprintf("amqp://guest:s3cret@127.0.0.1:%d/,amqp://u:s3cret@127.0.0.1:nope/", port))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	require.Contains(t, err.Error(), fmt.Sprintf("127.0.0.1:%d: ", port))
	require.Contains(t, err.Error(), "RABBITMQ_URL node 2 of 2: not a valid URL")
}

// A list whose first node is dead (nothing listens on its port): the
// publisher, the worker and the dead-letter tool connect to the next one,
// and claims are stored. The queues are declared with replicas, which a
// declaration through one URL (no replicas) is refused: RabbitMQ holds
// every declaration of a queue to the arguments it was created with.
func TestURLListSkipsDeadNode(t *testing.T) {
	t.Parallel()
	dead := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", testenv.FreePort(t))
	h := newHarnessAt(t, 5, dead+","+testenv.SharedRabbitMQURL())
	want := map[string]claim.Cents{}
	for i := range 50 {
		npi := fmt.Sprintf("10000000%02d", i%7)
		h.enqueue(h.prepare(fmt.Sprintf("c-%d", i), npi, 100+i, ""))
		want[npi] += claim.Cents((100 + i + 20) * 100)
	}
	h.startWorker(16)
	h.waitStored(50)
	h.requireTotals(want)

	dl, err := queue.OpenDeadLetters(h.cfg, h.status)
	require.NoError(t, err)
	require.NoError(t, dl.Close())

	single := h.cfg
	single.URL = testenv.SharedRabbitMQURL()
	_, err = queue.OpenDeadLetters(single, h.status)
	require.ErrorContains(t, err, "x-quorum-initial-group-size")
	single.Replicas = queue.DefaultReplicas
	dl, err = queue.OpenDeadLetters(single, h.status)
	require.NoError(t, err, "the same replicas, set explicitly")
	require.NoError(t, dl.Close())
}
