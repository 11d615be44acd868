package queue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// harness is the async path on real services: a database of the test's own,
// a key prefix on the shared Redis and a queue of its own on the shared
// RabbitMQ.
type harness struct {
	t      *testing.T
	st     *store.Store
	dbURL  string
	rdb    *redis.Client
	keys   rank.Keys
	cfg    queue.Config
	svc    *ingest.Service
	status *queue.Status
	m      *queue.Metrics
	pub    *queue.Publisher
}

func newHarness(t *testing.T, deliveryLimit int) *harness {
	t.Helper()
	return newHarnessAt(t, deliveryLimit, testenv.SharedRabbitMQURL())
}

// newHarnessAt is newHarness with RABBITMQ_URL rabbitURL, which must name the
// shared broker among its nodes.
func newHarnessAt(t *testing.T, deliveryLimit int, rabbitURL string) *harness {
	t.Helper()
	st, dbURL := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	h := &harness{t: t, st: st, dbURL: dbURL, rdb: rdb, keys: rank.Keys{Prefix: prefix},
		cfg: queue.Config{URL: rabbitURL, Queue: testenv.MustQueueName(t), DeliveryLimit: deliveryLimit}}
	h.svc = ingest.New(st, rank.NewRedis(rdb, h.keys), ingest.Config{}, prometheus.NewRegistry(), nil)
	t.Cleanup(h.svc.Close)
	h.status = queue.NewStatus(rdb, rank.Keys{Prefix: prefix}, queue.StatusConfig{TTL: time.Hour})
	h.m = queue.NewMetrics(prometheus.NewRegistry())
	h.pub = queue.NewPublisher(queue.PublisherConfig{Config: h.cfg}, h.status, h.m, testenv.Logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.pub.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return h.pub.Ready(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	return h
}

// startWorker runs a worker until the returned stop is called (or the test ends).
func (h *harness) startWorker(prefetch int) (stop func()) {
	w := queue.NewWorker(queue.WorkerConfig{Config: h.cfg, Prefetch: prefetch}, h.svc, h.status, h.m, testenv.Logger(h.t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	stop = func() { cancel(); <-done }
	h.t.Cleanup(stop)
	require.Eventually(h.t, func() bool { return w.Ready(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	return stop
}

const lineJSON = `{"service_date": "2025-01-15", "submitted_procedure": "D0180", "plan_group": "GRP-1000",
  "subscriber": "3730189502", "provider_npi": %q, "provider_fees": "%d.00", "allowed_fees": 10,
  "member_coinsurance": 10, "member_copay": 20}`

// prepare is a validated claim with one line for npi whose net fee is
// dollars + 20, under claimID when not "".
func (h *harness) prepare(claimID, npi string, dollars int, key string) claim.Submission {
	h.t.Helper()
	body := fmt.Sprintf(`{"claim_id": %q, "lines": [`+lineJSON+`]}`, claimID, npi, dollars)
	if claimID == "" {
		body = fmt.Sprintf(`{"lines": [`+lineJSON+`]}`, npi, dollars)
	}
	in, err := claim.DecodeJSONBytes([]byte(body))
	require.NoError(h.t, err)
	return claim.Submission{Input: in, IdempotencyKey: key}
}

// enqueue validates and publishes a claim as POST /claims does in async mode.
func (h *harness) enqueue(req claim.Submission) claim.Claim {
	h.t.Helper()
	c, err := h.svc.Prepare(req)
	require.NoError(h.t, err)
	require.NoError(h.t, h.pub.Enqueue(context.Background(), c, req.IdempotencyKey))
	return c
}

func (h *harness) storedClaims() int {
	h.t.Helper()
	conn, err := pgx.Connect(context.Background(), h.dbURL)
	require.NoError(h.t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(h.t, conn.QueryRow(context.Background(), "SELECT count(*) FROM claims").Scan(&n))
	return n
}

func (h *harness) waitStored(n int) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.storedClaims() >= n }, 30*time.Second, 20*time.Millisecond,
		"waiting for %d claims to be stored", n)
	time.Sleep(100 * time.Millisecond) // time for a wrong extra claim to show
	require.Equal(h.t, n, h.storedClaims(), "each claim stored once")
}

// requireTotals checks Postgres's totals and the Redis scores against the
// net fees the test expects per provider.
func (h *harness) requireTotals(want map[string]claim.Cents) {
	h.t.Helper()
	top, err := h.st.TopProviders(context.Background(), 0, 1000)
	require.NoError(h.t, err)
	got := map[string]claim.Cents{}
	for _, p := range top {
		got[p.ProviderNPI] = p.NetFee
	}
	require.Equal(h.t, want, got, "Postgres totals")
	for npi, fee := range want {
		score, err := h.rdb.ZScore(context.Background(), h.keys.Shard(h.keys.ShardOf(npi)).Ranking(), npi).Result()
		require.NoError(h.t, err, npi)
		require.Equal(h.t, float64(fee), score, "Redis score of %s", npi)
	}
}

func (h *harness) state(id string) (queue.State, bool) {
	h.t.Helper()
	st, found, err := h.status.Lookup(context.Background(), "", id)
	require.NoError(h.t, err)
	return st, found
}

// Claims accepted while no worker runs wait in the queue, known as queued;
// a worker then stores each once, with totals and Redis exact, and
// duplicates (same claim_id, same idempotency key) resolve to the first.
func TestQueuedClaimsStoredOnceByWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 5)
	want := map[string]claim.Cents{}
	var accepted []claim.Claim
	for i := range 300 {
		npi := fmt.Sprintf("10000000%02d", i%40)
		c := h.enqueue(h.prepare(fmt.Sprintf("c-%d", i), npi, 100+i, ""))
		want[npi] += claim.Cents((100 + i + 20) * 100)
		accepted = append(accepted, c)
	}
	again := h.enqueue(h.prepare("c-7", "1000000007", 107, ""))       // claim_id resent
	keyed := h.enqueue(h.prepare("", "1000000099", 50, "key-1"))      // no claim_id, a key
	keyedAgain := h.enqueue(h.prepare("", "1000000099", 50, "key-1")) // its retry
	other := h.enqueue(h.prepare("c-1", "1000000098", 1, ""))         // claim_id reused for another claim
	want["1000000099"] = 7000
	for _, c := range append(accepted, again, keyed, keyedAgain, other) {
		st, found := h.state(c.ID)
		require.True(t, found)
		require.Equal(t, claim.StatusQueued, st.Status)
		require.Equal(t, c.NetFee(), st.NetFee)
	}
	require.Zero(t, h.storedClaims(), "nothing is stored without a worker")

	h.startWorker(64)
	h.waitStored(301)
	h.requireTotals(want)
	// Of the two requests with one key, whichever a worker took first is
	// stored; the other resolves to it.
	require.Eventually(t, func() bool {
		a, _ := h.state(keyed.ID)
		b, _ := h.state(keyedAgain.ID)
		return a.Status == claim.StatusStored || b.Status == claim.StatusStored
	}, 5*time.Second, 10*time.Millisecond)
	if st, _ := h.state(keyed.ID); st.Status == claim.StatusStored {
		keyed, keyedAgain = keyedAgain, keyed
	}
	for _, c := range append(accepted, keyed) {
		require.Eventually(t, func() bool { _, found := h.state(c.ID); return !found }, 5*time.Second, 10*time.Millisecond,
			"a stored claim's status entry is deleted: Postgres answers for it")
		got, err := h.st.Claim(context.Background(), "", c.ID)
		require.NoError(t, err)
		require.Equal(t, c.Lines, got.Lines)
		require.True(t, c.ReceivedAt.Equal(got.ReceivedAt), "stored as accepted")
	}
	require.Eventually(t, func() bool {
		st, _ := h.state(again.ID)
		return st.Status == claim.StatusStored
	}, 5*time.Second, 10*time.Millisecond)
	st, _ := h.state(again.ID)
	require.Equal(t, accepted[7].ID, st.StoredAs)
	st, _ = h.state(keyedAgain.ID)
	require.Equal(t, claim.StatusStored, st.Status)
	require.Equal(t, keyed.ID, st.StoredAs)
	require.Eventually(t, func() bool {
		st, _ := h.state(other.ID)
		return st.Status == claim.StatusDeadLettered
	}, 5*time.Second, 10*time.Millisecond)
	st, _ = h.state(other.ID)
	require.Contains(t, st.Reason, "claim_id")
	require.Equal(t, 1.0, testutil.ToFloat64(h.m.DeadLettered("invalid")))

	dl, err := queue.OpenDeadLetters(h.cfg, h.status)
	require.NoError(t, err)
	defer dl.Close()
	var list []queue.DeadLetter
	require.Eventually(t, func() bool {
		list, err = dl.List(context.Background(), false)
		return err == nil && len(list) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, other.ID, list[0].MessageID)
	require.Equal(t, "invalid", list[0].Reason, "listed with the metric's reason")
}

// A message no queue takes (the queue was deleted under the publisher) is
// returned by the broker before its positive confirm: it is refused, never
// reported accepted.
func TestReturnedMessageIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 5)
	h.enqueue(h.prepare("", "1000000001", 1, ""))
	conn, err := amqp.Dial(h.cfg.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(h.cfg.Queue, false, false, false)
	require.NoError(t, err)

	c, err := h.svc.Prepare(h.prepare("", "1000000001", 1, ""))
	require.NoError(t, err)
	err = h.pub.Enqueue(context.Background(), c, "")
	require.ErrorIs(t, err, claim.ErrUnavailable)
	require.ErrorContains(t, err, "no queue took the message")
	_, found := h.state(c.ID)
	require.False(t, found, "a refused claim was never accepted")
}

// With the broker unreachable a claim is refused at once.
func TestBrokerDownRefusesAtOnce(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.MustSharedRedis(t)
	status := queue.NewStatus(rdb, rank.Keys{Prefix: prefix}, queue.StatusConfig{TTL: time.Hour})
	cfg := queue.PublisherConfig{Config: queue.Config{URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", testenv.FreePort(t))}}
	pub := queue.NewPublisher(cfg, status, queue.NewMetrics(prometheus.NewRegistry()), testenv.Logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := claim.Claim{ID: "01a22487-af71-7a68-b316-1e8068d443bb", ReceivedAt: time.Now()}
	start := time.Now()
	err := pub.Enqueue(context.Background(), c, "")
	require.ErrorIs(t, err, claim.ErrUnavailable)
	var ra *claim.RetryAfter
	require.ErrorAs(t, err, &ra)
	require.Less(t, time.Since(start), time.Second, "refused without waiting for a confirm")
	require.Error(t, pub.Ready(ctx))
}

// Poison messages: one that is not a claim is dead-lettered on its first
// delivery; one that fails every time (here a trigger refuses it) is
// dead-lettered by the broker after the delivery limit. Both are listed;
// once the cause is fixed, replay stores the second, and a corrected body
// replayed in place of the first stores it.
func TestPoisonMessagesDeadLetteredAndReplayed(t *testing.T) {
	t.Parallel()
	const limit = 3
	h := newHarness(t, limit)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'provider 1999999999 is refused'; END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON claim_lines FOR EACH ROW
WHEN (NEW.provider_npi = '1999999999') EXECUTE FUNCTION refuse_poison();`)
	require.NoError(t, err)

	// A message that is not a claim, published as a buggy producer would.
	amqpConn, err := amqp.Dial(h.cfg.URL)
	require.NoError(t, err)
	defer amqpConn.Close()
	ch, err := amqpConn.Channel()
	require.NoError(t, err)
	garbageID := "01a22487-af71-7a68-b316-000000000001"
	require.NoError(t, ch.PublishWithContext(ctx, "", h.cfg.Queue, false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, MessageId: garbageID, Body: []byte(`{"lines": [{"service_date": `),
		Headers: amqp.Table{"claimd-received-at": time.Now().UTC().Format(time.RFC3339Nano)},
	}))
	poison := h.enqueue(h.prepare("poison", "1999999999", 10, ""))
	good := h.enqueue(h.prepare("good", "1000000001", 10, ""))

	h.startWorker(16)
	dl, err := queue.OpenDeadLetters(h.cfg, h.status)
	require.NoError(t, err)
	defer dl.Close()
	var list []queue.DeadLetter
	require.Eventually(t, func() bool {
		list, err = dl.List(ctx, true)
		return err == nil && len(list) == 2
	}, 30*time.Second, 50*time.Millisecond)
	reasons := map[string]string{}
	for _, m := range list {
		reasons[m.MessageID] = m.Reason
	}
	require.Equal(t, map[string]string{garbageID: "undecodable", poison.ID: "delivery_limit"}, reasons,
		"the reasons of claimd_queue_dead_lettered_total")
	require.Equal(t, 1, h.storedClaims(), "the good claim is stored beside the poison")
	require.Equal(t, 1.0, testutil.ToFloat64(h.m.DeadLettered("undecodable")))
	require.Equal(t, 1.0, testutil.ToFloat64(h.m.DeadLettered("delivery_limit")))
	require.Equal(t, float64(limit+1), testutil.ToFloat64(h.m.Requeued()), "delivered limit+1 times")
	st, _ := h.state(poison.ID)
	require.Equal(t, claim.StatusDeadLettered, st.Status)
	require.Equal(t, fmt.Sprintf("not stored after %d deliveries; the workers' log has the cause", limit+1), st.Reason,
		"the database's words stay in the log")
	_, err = h.st.Claim(ctx, "", good.ID)
	require.NoError(t, err)

	list, err = dl.List(ctx, false)
	require.NoError(t, err)
	require.Len(t, list, 2, "listing gives the messages back")

	_, err = conn.Exec(ctx, `DROP TRIGGER refuse_poison ON claim_lines`)
	require.NoError(t, err)
	n, err := dl.Replay(ctx, []string{poison.ID}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	fixed := strings.Replace(fmt.Sprintf(`{"lines": [`+lineJSON+`]}`, "1000000002", 30), "\n", " ", -1)
	n, err = dl.Replay(ctx, []string{garbageID}, map[string][]byte{garbageID: []byte(fixed)})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	h.waitStored(3)
	h.requireTotals(map[string]claim.Cents{"1999999999": 3000, "1000000001": 3000, "1000000002": 5000})
	got, err := h.st.Claim(ctx, "", garbageID)
	require.NoError(t, err, "the corrected claim is stored under the id of the message")
	require.Len(t, got.Lines, 1)
	list, err = dl.List(ctx, false)
	require.NoError(t, err)
	require.Empty(t, list)

	// Purge removes for good.
	require.NoError(t, ch.PublishWithContext(ctx, "", h.cfg.DeadLetterQueue(), false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, MessageId: "x", Body: []byte("junk")}))
	require.Eventually(t, func() bool { list, _ = dl.List(ctx, false); return len(list) == 1 }, 5*time.Second, 20*time.Millisecond)
	n, err = dl.Purge(ctx, []string{"x"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	list, err = dl.List(ctx, false)
	require.NoError(t, err)
	require.Empty(t, list)
}

// The message body is the claim in the API's own form: decoding and
// validating it again gives the same claim.
func TestMessageBodyIsTheClaim(t *testing.T) {
	t.Parallel()
	in, err := claim.DecodeJSONBytes([]byte(`{"claim_id": " x-1 ", "lines": [
	  {"Service Date": "3/28/18 0:00", "Submitted Procedure": "d4211", "Quadrant": "ur", "Plan/Group #": "GRP-1000",
	   "Subscriber#": "3730189502", "Provider NPI": "1497775538", "Provider Fees": "$1,950.00 ", "Allowed Fees": "$95.00",
	   "Member Coinsurance": "$50.00", "Member Copay": "$50.05"},
	  {"service_date": "2018-03-29", "submitted_procedure": "D0180", "plan_group": "G", "subscriber": "1",
	   "provider_npi": "1497775535", "provider_fees": 0, "allowed_fees": 10.5, "member_coinsurance": 0, "member_copay": 0}]}`))
	require.NoError(t, err)
	svc := ingest.New(nil, nil, ingest.Config{}, prometheus.NewRegistry(), nil)
	defer svc.Close()
	c, err := svc.Prepare(claim.Submission{Input: in, Client: "client-a"})
	require.NoError(t, err)
	d, err := queue.MessageOf(c, "key-9")
	require.NoError(t, err)
	req, err := queue.Decode(d)
	require.NoError(t, err)
	require.Equal(t, "key-9", req.IdempotencyKey)
	again, err := svc.Prepare(req)
	require.NoError(t, err)
	require.Equal(t, c, again)
	require.Equal(t, c.Fingerprint(), again.Fingerprint())
}
