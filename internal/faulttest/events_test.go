package faulttest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/testenv"
)

// The events scenarios: claimd writes an event to the outbox in the
// transaction that stores or reverses a claim, and its relay publishes the
// outbox to RabbitMQ. While one of them is killed or restarted under claim
// and reversal load, no event may be lost, none of a transaction that
// rolled back may be published, and the totals must stay exact: Verify
// checks the claims and totals (reversed claims counting 0), and
// CheckEvents what a test consumer received, deduplicated by event_id.

// reverseEvery is the share of the acknowledged claims the scenarios
// reverse: every third one.
const reverseEvery = 3

// Scenario E1: two instances share Postgres and Redis, both with events on;
// the one holding the relay's lock is SIGKILLed while events flow, and the
// other must take the relay over (the lock died with the killed one's
// session) and publish what the killed one left unconfirmed or unmarked.
// The first kill is made to fall in the window at-least-once delivery
// exists for: the test holds row locks on the events waiting in the outbox,
// so the relay publishes them, has them confirmed, and then waits to mark
// them sent; killed then, its successor must publish them again. The
// second kill falls wherever it falls while events flow. Each killed
// instance is started again, as a standby: each takes over from the other
// once.
func TestEventsRelayKilledMidPublish(t *testing.T) {
	requireFaults(t)
	rs := testenv.MustRedisServer(t)
	db := testenv.MustDatabase(t)
	exchange, queue := testenv.MustEventsExchange(t)
	broker := testenv.SharedRabbitMQURL()
	cfg := ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL(), Env: EventsEnv(broker, exchange, queue)}
	a := StartClaimd(t, "claimd-a", cfg)
	b := StartClaimd(t, "claimd-b", cfg)
	consumer := StartEventConsumer(t, broker, queue)

	// Paced, so that events still flow at the second kill.
	load := NewLoad(t, LoadConfig{Claims: 900, Clients: 10, Rate: 100})
	load.Start(a.BaseURL(), b.BaseURL())
	revs := StartReversals(t, load, reverseEvery, a.BaseURL(), b.BaseURL())
	var held []string // events confirmed but not marked sent at the first kill
	for i, at := range []float64{0.3, 0.65} {
		load.WaitFraction(at)
		relay, standby := activeRelay(t, a, b)
		how, release := "while events flow", func() {}
		if i == 0 {
			var locked []string
			locked, release = holdOutboxRows(t, db)
			defer release()
			// The relay may have read its batch before the rows were locked,
			// and then block on marking it sent before it reads the rest:
			// the events held are those of the locked rows it published.
			waitFor(t, 10*time.Second, "the relay to publish held events", func() error {
				if len(received(consumer, locked)) == 0 {
					return fmt.Errorf("none of %d held events received", len(locked))
				}
				return nil
			})
			time.Sleep(200 * time.Millisecond) // the rest of its batch; it now waits for the locks to mark them sent
			for id := range received(consumer, locked) {
				held = append(held, id)
			}
			how = fmt.Sprintf("with %d of the %d locked events published, confirmed and received, waiting to be marked sent", len(held), len(locked))
		}
		published, _ := relay.Metric("claimd_events_published_total")
		relay.Kill()
		killed := time.Now()
		release()
		t.Logf("kill %d: SIGKILL of %s, the active relay (it had marked %g events sent since its start), %s, after %d claims finished and %d reversals acknowledged",
			i+1, relay.Name(), published, how, load.finished.Load(), revs.Acked.Load())
		waitFor(t, 15*time.Second, standby.Name()+" to take the relay over", func() error {
			if v, _ := standby.Metric("claimd_outbox_relay_active"); v != 1 {
				return fmt.Errorf("claimd_outbox_relay_active of %s is %g", standby.Name(), v)
			}
			return nil
		})
		t.Logf("kill %d: %s took the relay over %s after the kill", i+1, standby.Name(), time.Since(killed).Round(time.Millisecond))
		relay.Start()
	}
	load.Wait()
	revs.Wait()

	sys := System{DatabaseURL: db, Redis: rs.Client(), API: a.BaseURL()}
	finishEvents(t, "E1 (two instances, the active relay SIGKILLed x2)", sys, load, revs, consumer, broker, a, b)
	var once []string
	for id, n := range received(consumer, held) {
		if n < 2 {
			once = append(once, id)
		}
	}
	assert.Empty(t, once, "events confirmed but not marked sent when the relay was killed must be published again")
}

// holdOutboxRows locks the rows of the events waiting in the outbox now
// (waiting until there is at least one), in a transaction of the test's
// own: the relay can still read and publish them, but not mark them sent.
// It returns their event ids, and release, to call once the relay's
// instance is killed: it terminates the sessions waiting for the locks,
// then lets go of them. (Postgres would otherwise let a killed client's
// waiting statement run to its commit once the locks are free: the relay
// would have marked the events sent after all.)
func holdOutboxRows(t *testing.T, db string) (eventIDs []string, release func()) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	require.NoError(t, err)
	var tx pgx.Tx
	waitFor(t, 10*time.Second, "events waiting in the outbox to lock", func() error {
		if tx != nil {
			_ = tx.Rollback(t.Context())
		}
		if tx, err = conn.Begin(t.Context()); err != nil {
			return proc.Stop(err)
		}
		rows, err := tx.Query(t.Context(), `SELECT e::text FROM (SELECT seq, event_ids FROM outbox ORDER BY seq FOR UPDATE) o, unnest(o.event_ids) e ORDER BY o.seq`)
		if err != nil {
			return proc.Stop(err)
		}
		if eventIDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return proc.Stop(err)
		}
		if len(eventIDs) == 0 {
			return errors.New("the outbox is empty")
		}
		return nil
	})
	var once sync.Once
	return eventIDs, func() {
		once.Do(func() {
			ctx := context.Background()
			var cut int
			err := tx.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))`).Scan(&cut)
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
			if err != nil {
				t.Errorf("terminate the sessions waiting for the outbox rows: %v", err)
			}
			t.Logf("terminated %d sessions waiting to mark the held events sent", cut)
		})
	}
}

// received counts the deliveries of each of ids the consumer got so far,
// leaving out those it did not get.
func received(consumer *EventConsumer, ids []string) map[string]int {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]int{}
	for _, d := range consumer.Deliveries() {
		if want[d.EventID] {
			out[d.EventID]++
		}
	}
	return out
}

// activeRelay waits until exactly one of a and b relays the outbox and has
// published events, and returns it and the other.
func activeRelay(t *testing.T, a, b *Claimd) (relay, standby *Claimd) {
	t.Helper()
	waitFor(t, 15*time.Second, "one instance to relay events", func() error {
		var active []*Claimd
		for _, cd := range []*Claimd{a, b} {
			if v, _ := cd.Metric("claimd_outbox_relay_active"); v == 1 {
				active = append(active, cd)
			}
		}
		if len(active) != 1 {
			return fmt.Errorf("%d instances report claimd_outbox_relay_active 1", len(active))
		}
		relay = active[0]
		if v, _ := relay.Metric("claimd_events_published_total"); v == 0 {
			return fmt.Errorf("%s relays but has published no event yet", relay.Name())
		}
		return nil
	})
	if relay == a {
		return a, b
	}
	return b, a
}

// Scenario E2: the broker (a node of the test's own) is stopped gracefully
// under load, and later SIGKILLed, each time started again a little later.
// Claims are stored synchronously, so ingest and reversals go on while it
// is away; their events wait in the outbox, and once it is back the relay
// publishes them and the consumer, connected again, receives them.
func TestEventsBrokerRestarted(t *testing.T) {
	requireFaults(t)
	rmq := StartRabbit(t)
	rs := testenv.MustRedisServer(t)
	db := testenv.MustDatabase(t)
	const exchange, queue = "claim-events", "payments.claim-events" // the node is ours alone
	cd := StartClaimd(t, "claimd", ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL(), Env: EventsEnv(rmq.URL(), exchange, queue)})
	consumer := StartEventConsumer(t, rmq.URL(), queue)

	// Paced, so that the load spans both outages and the boots after them
	// (a boot takes about 10s on this machine).
	load := NewLoad(t, LoadConfig{Claims: 800, Clients: 8, KeyShare: 0.3, Rate: 30})
	load.Start(cd.BaseURL())
	revs := StartReversals(t, load, reverseEvery, cd.BaseURL())

	outage := func(n int, stop func(), how string) {
		stop()
		t.Logf("outage %d: broker %s after %d claims finished and %d reversals acknowledged", n, how, load.finished.Load(), revs.Acked.Load())
		time.Sleep(time.Second) // claims and reversals go on; their events wait
		unsent := outboxUnsent(t, db)
		assert.Positive(t, unsent, "outage %d: events must wait in the outbox while the broker is away (is the load over?)", n)
		started := time.Now()
		rmq.Start()
		t.Logf("outage %d: broker started again (its boot took %s) after %d claims finished; %d events waited in the outbox 1s into the outage",
			n, time.Since(started).Round(time.Millisecond), load.finished.Load(), unsent)
	}
	load.WaitFraction(0.1)
	outage(1, rmq.Stop, "stopped gracefully")
	// A node killed too soon after its start may lose its quorum queues'
	// confirmed messages (see RabbitQueueSettleTime): the broker's fault,
	// not claimd's, so the kill waits that long.
	time.Sleep(max(0, RabbitQueueSettleTime-rmq.SinceStart()))
	outage(2, rmq.Kill, "SIGKILLed")
	load.Wait()
	revs.Wait()

	require.True(t, cd.Running(), "claimd must survive the broker's restarts")
	sys := System{DatabaseURL: db, Redis: rs.Client(), API: cd.BaseURL()}
	finishEvents(t, "E2 (broker stopped, then SIGKILLed, restarted each time)", sys, load, revs, consumer, rmq.URL(), cd)
}

// outboxUnsent is how many events of the outbox are not marked sent.
func outboxUnsent(t *testing.T, db string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), outboxUnsentSQL).Scan(&n))
	return n
}

// Scenario E3: Postgres (the suite's own) is stopped with a fast shutdown
// under claim and reversal load and started again 2s later, as in scenario
// 3. Transactions in flight roll back, with the events they wrote; the
// relay loses its lock and its connections and must come back by itself.
// A reversal whose answer was lost is sent again and answered the same.
func TestEventsPostgresRestartedUnderReversalLoad(t *testing.T) {
	requireFaults(t)
	pg := StartPostgres(t)
	db := pg.URL("claims")
	rs := testenv.MustRedisServer(t)
	exchange, queue := testenv.MustEventsExchange(t)
	broker := testenv.SharedRabbitMQURL()
	cd := StartClaimd(t, "claimd", ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL(), Env: EventsEnv(broker, exchange, queue)})
	consumer := StartEventConsumer(t, broker, queue)

	load := NewLoad(t, LoadConfig{Claims: 900, Clients: 10, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	revs := StartReversals(t, load, reverseEvery, cd.BaseURL())
	load.WaitFraction(0.3)
	pg.Stop()
	t.Logf("postgres stopped after %d claims finished and %d reversals acknowledged", load.finished.Load(), revs.Acked.Load())
	time.Sleep(2 * time.Second)
	pg.Start()
	t.Logf("postgres started again after %d claims finished and %d reversals acknowledged", load.finished.Load(), revs.Acked.Load())
	load.Wait()
	revs.Wait()

	require.True(t, cd.Running(), "claimd must survive a Postgres restart")
	s := load.Sender.Stats
	assert.Zero(t, s.NoRetryAfter.Load(), "503/409 answers without Retry-After")
	t.Logf("503 answers: claims %d, reversals %d", s.Unavailable.Load(), revs.Unavailable.Load())
	sys := System{DatabaseURL: db, Redis: rs.Client(), API: cd.BaseURL()}
	finishEvents(t, "E3 (Postgres fast shutdown under reversal load, restart)", sys, load, revs, consumer, broker, cd)
}

// finishEvents runs the end checks of an events scenario once its load and
// reversals are over: every claim and reversal acknowledged, no 5xx but 503,
// the usual Verify, then CheckEvents; it reports the scenario and stops
// instances[0] gracefully (see finish), after logging every instance's
// relay metrics.
func finishEvents(t *testing.T, scenario string, sys System, load *Load, revs *Reversals, consumer *EventConsumer, broker string, instances ...*Claimd) {
	t.Helper()
	requireEveryClaimAnswered(t, load)
	assert.Zero(t, load.Sender.Stats.Other5xx.Load(), "claims: 5xx answers other than 503 with Retry-After")
	assert.Empty(t, revs.Problems(), "reversals: answers that break the contract")
	assert.Equal(t, revs.Sent.Load(), revs.Acked.Load(), "every reversal sent must be acknowledged: %s", revs)
	require.Positive(t, revs.Acked.Load(), "no reversal acknowledged")

	report := Verify(t, sys, load)
	ev := CheckEvents(t, consumer, sys.DatabaseURL, broker, instances...)
	reversed := 0
	for _, c := range load.Claims {
		if _, acked := c.Reversal(); acked {
			reversed++
		}
	}
	require.Equal(t, report.Stored, ev.Stored, "one claim.stored per stored claim")
	require.Equal(t, reversed, ev.Reversed, "one claim.reversed per acknowledged reversal")
	LogEvents(t, scenario, load, revs, ev)
	for _, cd := range instances {
		logRelayMetrics(t, cd)
	}
	for _, cd := range instances[1:] {
		cd.Terminate()
	}
	finish(t, instances[0], scenario, load, report)
}

// logRelayMetrics logs what an instance's outbox relay counted since its
// last start.
func logRelayMetrics(t *testing.T, cd *Claimd) {
	t.Helper()
	m, err := loadkit.Scrape(t.Context(), cd.BaseURL())
	require.NoError(t, err)
	var parts []string
	for _, name := range []string{"claimd_outbox_relay_active", "claimd_events_published_total", "claimd_events_publish_failures_total"} {
		samples := m.Samples(name)
		for _, sample := range slices.Sorted(maps.Keys(samples)) {
			// Failures are shown by reason, and only when not 0.
			if v := samples[sample]; v != 0 || !strings.Contains(sample, "reason=") {
				parts = append(parts, fmt.Sprintf("%s=%g", strings.TrimPrefix(sample, "claimd_"), v))
			}
		}
	}
	t.Logf("claimd %s relay metrics (since its start %d): %s", cd.Name(), cd.Starts(), strings.Join(parts, " "))
}

// TestEventsCheckCatchesLossAndRollback checks the events checker: after a
// clean run passes, what the consumer received is altered in each way the
// scenarios guard against, and each must be reported: an event lost, one
// of a claim not in Postgres (a transaction rolled back), a claim reversed
// twice, a duplicate that differs, and a claim's events out of order. Then
// Verify's check of reversals: a reversed claim the client never reversed,
// and a reversal the client had acknowledged that Postgres lacks.
func TestEventsCheckCatchesLossAndRollback(t *testing.T) {
	requireFaults(t)
	rs := testenv.MustRedisServer(t)
	db := testenv.MustDatabase(t)
	exchange, queue := testenv.MustEventsExchange(t)
	broker := testenv.SharedRabbitMQURL()
	cd := StartClaimd(t, "claimd", ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL(), Env: EventsEnv(broker, exchange, queue)})
	consumer := StartEventConsumer(t, broker, queue)
	load := NewLoad(t, LoadConfig{Claims: 60, Clients: 4})
	load.Start(cd.BaseURL())
	revs := StartReversals(t, load, reverseEvery, cd.BaseURL())
	load.Wait()
	revs.Wait()
	CheckEvents(t, consumer, db, broker, cd)
	pg, err := readEventsState(db)
	require.NoError(t, err)

	got := consumer.Deliveries()
	storedOf := map[string]Delivery{}
	var reversed []Delivery
	for _, d := range got {
		switch d.Type {
		case events.TypeStored:
			storedOf[d.ID] = d
		case events.TypeReversed:
			reversed = append(reversed, d)
		}
	}
	require.GreaterOrEqual(t, len(reversed), 3, "reversed claims to alter")
	lost, twice, late := reversed[0], reversed[1], reversed[2]

	var altered []Delivery
	for _, d := range got {
		// lost's claim.stored never arrives; late's arrives only at the end.
		if d.EventID != storedOf[lost.ID].EventID && d.EventID != storedOf[late.ID].EventID {
			altered = append(altered, d)
		}
	}
	ghost := storedOf[late.ID] // as if stored by a transaction that rolled back
	ghost.EventID, ghost.ID = uuid.NewString(), uuid.NewString()
	ghost.MessageID = ghost.EventID
	again := twice // reversed a second time
	again.EventID = uuid.NewString()
	again.MessageID = again.EventID
	changed := lost // a duplicate unlike the first
	changed.Body = append(slices.Clone(lost.Body), ' ')
	altered = append(altered, ghost, again, changed, storedOf[late.ID])

	problems, _ := checkEvents(altered, pg)
	text := strings.Join(problems, "\n")
	assert.Contains(t, text, fmt.Sprintf("claim %s (claim_id %s, reversed): 0 distinct claim.stored and 1 claim.reversed events", lost.ID, lost.ClaimID))
	assert.Contains(t, text, fmt.Sprintf("claim %s has 1 events but is not in Postgres", ghost.ID))
	assert.Contains(t, text, fmt.Sprintf("claim %s (claim_id %s, reversed): 1 distinct claim.stored and 2 claim.reversed events", twice.ID, twice.ClaimID))
	assert.Contains(t, text, fmt.Sprintf("event %s delivered twice with different bodies", lost.EventID))
	assert.Contains(t, text, fmt.Sprintf("claim %s: its claim.reversed (delivery", late.ID))
	assert.Contains(t, text, "provider totals from the events vs provider_totals")

	// Verify's side: the client's view of which claims it reversed, altered.
	sys := System{DatabaseURL: db, Redis: rs.Client(), API: cd.BaseURL()}
	problems, _ = check(sys, load)
	require.Empty(t, problems, "the unaltered load passes")
	var forgot, claimed *Claim // a reversed claim the client forgets, one it thinks it reversed
	for _, c := range load.Claims {
		switch sent, acked := c.Reversal(); {
		case acked && forgot == nil:
			forgot = c
		case !sent && claimed == nil:
			claimed = c
		}
	}
	forgot.reversalSent, forgot.reversed = false, false
	claimed.reversalSent, claimed.reversed = true, true
	problems, _ = check(sys, load)
	text = strings.Join(problems, "\n")
	assert.Contains(t, text, fmt.Sprintf(`(f) claim %s was never reversed, but its status is "reversed"`, forgot.ExternalID))
	assert.Contains(t, text, fmt.Sprintf(`(f) claim %s: its reversal was acknowledged, but its status is "stored"`, claimed.ExternalID))
	cd.Terminate()
}
