package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// waitFor bounds every wait of these tests: an upper bound, never a
// measurement.
const waitFor = 15 * time.Second

// outbox is a store on a database of the test's own, and a connection to
// that database to write outbox rows straight in, as the claim transactions
// do.
type outbox struct {
	t  *testing.T
	st *store.Store
	db *pgx.Conn
}

func mustOutbox(t *testing.T) *outbox {
	t.Helper()
	st, url := testenv.MustStore(t)
	db, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return &outbox{t: t, st: st, db: db}
}

// mustWrite writes the events of n claims, every third one reversed, and
// returns them with their seqs, in seq order.
func (o *outbox) mustWrite(n int) []events.Row {
	o.t.Helper()
	rows := make([]events.Row, n)
	for i := range rows {
		c := claim.Claim{ID: uuid.NewString(), ExternalID: fmt.Sprintf("c-%d", i),
			ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), Lines: []claim.Line{{
				ServiceDate: time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC), SubmittedProcedure: "D0180",
				PlanGroup: "GRP-1000", Subscriber: "3730189502", ProviderNPI: "1000000001",
				ProviderFees: claim.Cents(10000 + i), AllowedFees: 1000, MemberCoinsurance: 500,
			}}}
		rows[i] = events.Stored(c)
		if i%3 == 2 {
			c.Reversal = &claim.Reversal{At: time.Now(), Reason: claim.ReasonPaymentFailed}
			rows[i] = events.Reversed(c)
		}
		require.NoError(o.t, o.db.QueryRow(context.Background(),
			"INSERT INTO outbox (event_ids, routing_keys, body) VALUES (ARRAY[$1::uuid], ARRAY[$2::text], $3) RETURNING seq",
			rows[i].EventID, rows[i].RoutingKey, rows[i].Body).Scan(&rows[i].Seq))
	}
	return rows
}

// unsent counts the events not marked sent.
func (o *outbox) unsent() int {
	o.t.Helper()
	var n int
	require.NoError(o.t, o.db.QueryRow(context.Background(), "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM outbox").Scan(&n))
	return n
}

// mustEventNames returns an exchange and a queue of the test's own on the
// shared RabbitMQ, both deleted when the test ends.
func mustEventNames(t *testing.T) (exchange, queue string) {
	t.Helper()
	queue = testenv.MustQueueName(t)
	exchange = queue + ".events"
	t.Cleanup(func() {
		conn, err := amqp.Dial(testenv.SharedRabbitMQURL())
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	})
	return exchange, queue
}

// relay is a running Relay with metrics of its own.
type relay struct {
	*events.Relay
	m    *events.Metrics
	stop func()
}

// startRelay runs a relay until stop is called (or the test ends).
func startRelay(t *testing.T, o *outbox, cfg events.RelayConfig) *relay {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = testenv.SharedRabbitMQURL()
	}
	cfg.LockRetry = 20 * time.Millisecond
	cfg.DepthInterval = 20 * time.Millisecond
	m := events.NewMetrics(prometheus.NewRegistry())
	r := &relay{Relay: events.NewRelay(o.st, cfg, m, testenv.Logger(t)), m: m}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	return r
}

// mustConsume takes n messages from queue, in the order they come, once
// the relay has declared it.
func mustConsume(t *testing.T, queue string, n int) []amqp.Delivery {
	t.Helper()
	conn, deliveries := mustConsumer(t, queue, n)
	defer conn.Close() // what it holds unacked goes back to the queue
	var got []amqp.Delivery
	timeout := time.After(waitFor)
	for len(got) < n {
		select {
		case d, ok := <-deliveries:
			require.True(t, ok, "the consumer was cancelled after %d of %d messages", len(got), n)
			require.NoError(t, d.Ack(false))
			got = append(got, d)
		case <-timeout:
			require.FailNowf(t, "messages missing", "%d of %d messages arrived", len(got), n)
		}
	}
	return got
}

// mustConsumer consumes from queue with a prefetch of n, on a connection
// the caller closes. A queue just declared may refuse a consumer
// for a moment (RabbitMQ 3.10 answers INTERNAL_ERROR while a new quorum
// queue starts), and the relay may not have declared it yet: it tries again.
func mustConsumer(t *testing.T, queue string, n int) (*amqp.Connection, <-chan amqp.Delivery) {
	t.Helper()
	var lastErr error
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		conn, err := amqp.Dial(testenv.SharedRabbitMQURL())
		require.NoError(t, err)
		ch, err := conn.Channel()
		require.NoError(t, err)
		if _, lastErr = ch.QueueDeclarePassive(queue, true, false, false, false, nil); lastErr == nil {
			require.NoError(t, ch.Qos(n, 0, false))
			var deliveries <-chan amqp.Delivery
			if deliveries, lastErr = ch.Consume(queue, "", false, false, false, false, nil); lastErr == nil {
				return conn, deliveries
			}
		}
		_ = conn.Close()
	}
	require.FailNowf(t, "no consumer", "queue %s: %v", queue, lastErr)
	return nil, nil
}

// requireDelivered checks that got are the events rows, in order.
func requireDelivered(t *testing.T, rows []events.Row, got []amqp.Delivery) {
	t.Helper()
	require.Len(t, got, len(rows))
	for i, row := range rows {
		d := got[i]
		require.Equal(t, row.EventID, d.MessageId, "message %d: seq %d expected", i, row.Seq)
		require.Equal(t, row.RoutingKey, d.RoutingKey)
		require.Equal(t, row.RoutingKey, d.Type)
		require.Equal(t, "application/json", d.ContentType)
		require.Equal(t, amqp.Persistent, d.DeliveryMode)
		require.Equal(t, row.Body, d.Body)
	}
}

func TestRelayPublishesEveryEventInOrderAndMarksItSent(t *testing.T) {
	t.Parallel()
	o := mustOutbox(t)
	exchange, queue := mustEventNames(t)
	before := o.mustWrite(11)
	r := startRelay(t, o, events.RelayConfig{Exchange: exchange, Queue: queue, BatchSize: 4})

	after := o.mustWrite(6) // while the relay runs: some while it idles
	rows := append(before, after...)
	requireDelivered(t, rows, mustConsume(t, queue, len(rows)))

	require.Eventually(t, func() bool { return o.unsent() == 0 }, waitFor, 10*time.Millisecond)
	require.Equal(t, 1.0, r.m.Active())
	require.Equal(t, 12.0, r.m.Published(events.TypeStored))
	require.Equal(t, 5.0, r.m.Published(events.TypeReversed)) // every third of 11, and of 6
	require.Zero(t, r.m.Published("other"))
	unsent, oldest, err := r.Depth(context.Background())
	require.NoError(t, err)
	require.Zero(t, unsent)
	require.Zero(t, oldest)

	r.stop()
	require.Zero(t, r.m.Active())
}

func TestOnlyOneRelayIsActiveAndAnotherTakesOver(t *testing.T) {
	t.Parallel()
	o := mustOutbox(t)
	exchange, queue := mustEventNames(t)
	cfg := events.RelayConfig{Exchange: exchange, Queue: queue}
	first := startRelay(t, o, cfg)
	require.Eventually(t, func() bool { return first.m.Active() == 1 }, waitFor, 5*time.Millisecond)
	second := startRelay(t, o, cfg)
	require.Eventually(t, func() bool { return second.Standbys() >= 3 }, waitFor, 5*time.Millisecond)
	require.Zero(t, second.m.Active())

	rows := o.mustWrite(5)
	requireDelivered(t, rows, mustConsume(t, queue, len(rows)))
	require.Eventually(t, func() bool { return o.unsent() == 0 }, waitFor, 10*time.Millisecond)
	require.Equal(t, 5.0, first.m.Published(events.TypeStored)+first.m.Published(events.TypeReversed))
	require.Zero(t, second.m.Published(events.TypeStored)+second.m.Published(events.TypeReversed))
	require.Zero(t, second.m.Active())

	first.stop()
	require.Eventually(t, func() bool { return second.m.Active() == 1 }, waitFor, 5*time.Millisecond)
	rows = o.mustWrite(5)
	requireDelivered(t, rows, mustConsume(t, queue, len(rows)))
	require.Eventually(t, func() bool { return o.unsent() == 0 }, waitFor, 10*time.Millisecond)
	require.Equal(t, 5.0, second.m.Published(events.TypeStored)+second.m.Published(events.TypeReversed))
}

func TestEventsWaitWhileTheBrokerIsAwayAndArePublishedOnceItIsBack(t *testing.T) {
	t.Parallel()
	o := mustOutbox(t)
	exchange, queue := mustEventNames(t)
	nowhere := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", testenv.FreePort(t))
	rows := o.mustWrite(4)

	away := startRelay(t, o, events.RelayConfig{URL: nowhere, Exchange: exchange, Queue: queue})
	require.Eventually(t, func() bool {
		return away.m.Failures("broker_down") >= 2 && away.m.Unsent() == 4 && away.m.OldestUnsent() > 0
	}, waitFor, 5*time.Millisecond)
	require.Equal(t, 4, o.unsent())
	away.stop()

	// The first node listed is still away: the relay goes on to the next.
	back := startRelay(t, o, events.RelayConfig{URL: nowhere + "," + testenv.SharedRabbitMQURL(),
		Exchange: exchange, Queue: queue})
	requireDelivered(t, rows, mustConsume(t, queue, len(rows)))
	require.Eventually(t, func() bool { return o.unsent() == 0 && back.m.Unsent() == 0 }, waitFor, 5*time.Millisecond)
}

func TestAnEventNoQueueTookStaysUnsentAndIsPublishedAgain(t *testing.T) {
	t.Parallel()
	o := mustOutbox(t)
	exchange, queue := mustEventNames(t)
	r := startRelay(t, o, events.RelayConfig{Exchange: exchange, Queue: queue})
	rows := o.mustWrite(2)
	requireDelivered(t, rows, mustConsume(t, queue, len(rows)))

	// Deleting the queue drops its binding: the exchange routes to nothing
	// and the broker confirms what it dropped. The relay publishes
	// mandatory, so the broker returns them instead, and the relay declares
	// the queue again.
	conn, err := amqp.Dial(testenv.SharedRabbitMQURL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(queue, false, false, false)
	require.NoError(t, err)

	rows = o.mustWrite(3)
	require.Eventually(t, func() bool { return o.unsent() == 0 }, waitFor, 10*time.Millisecond)
	require.GreaterOrEqual(t, r.m.Failures("unroutable"), 1.0)
	requireDelivered(t, rows, mustConsume(t, queue, len(rows)))
}

func TestRelayConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg := events.WithDefaults(events.RelayConfig{})
	require.Equal(t, events.RelayConfig{Exchange: "claim-events", Queue: "payments.claim-events",
		BatchSize: events.DefaultBatchSize, Idle: events.DefaultIdle, ConfirmTimeout: events.DefaultConfirmTimeout,
		LockRetry: events.DefaultLockRetry, DepthInterval: events.DefaultDepthInterval}, cfg)
}
