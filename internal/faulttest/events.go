package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/loadkit"
)

// EventsEnv is the environment that turns claimd's events on (they are off
// in the suite unless named: see loadkit.Environ): the outbox relay
// publishes to exchange on the broker at url, into queue.
func EventsEnv(url, exchange, queue string) []string {
	return []string{"RABBITMQ_URL=" + url, "EVENTS_EXCHANGE=" + exchange, "EVENTS_QUEUE=" + queue}
}

// Delivery is one message the test consumer received, as it came.
type Delivery struct {
	MessageID   string
	RoutingKey  string
	Redelivered bool
	Body        []byte

	// From the body.
	EventID string
	Type    string
	ID      string // the claim's id
	ClaimID string // the claim's claim_id
	Status  string
	NetFee  int64 // net_fee_cents
	Fees    map[string]int64
	Invalid error // the body against its JSON Schema (events.Validate)
}

// EventConsumer is the payments side as the suite plays it: one consumer
// of the events queue with manual acks, which records every delivery before
// it acks it, and connects again whenever its connection is lost (a broker
// restarted). Redeliveries of messages whose ack was lost are recorded too:
// delivery is at least once, and CheckEvents deduplicates by event_id.
type EventConsumer struct {
	t     testing.TB
	url   string
	queue string

	mu         sync.Mutex
	deliveries []Delivery
	connects   int
	lastErr    error

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// StartEventConsumer consumes queue on the broker at url until Stop or the
// end of the test. The queue need not exist yet: claimd's relay declares it,
// and the consumer tries again every 200ms until it can consume.
func StartEventConsumer(t testing.TB, url, queue string) *EventConsumer {
	c := &EventConsumer{t: t, url: url, queue: queue, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	t.Cleanup(c.Stop)
	return c
}

// Stop stops consuming and waits until the consumer's goroutine is done;
// the messages it got but did not ack yet go back to the queue.
func (c *EventConsumer) Stop() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}

// Deliveries lists every delivery so far, in the order received.
func (c *EventConsumer) Deliveries() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.deliveries)
}

// Connects is how often the consumer started consuming.
func (c *EventConsumer) Connects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connects
}

func (c *EventConsumer) run() {
	defer close(c.done)
	for {
		err := c.consume()
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		select {
		case <-c.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// consume consumes over one connection until it fails or Stop.
func (c *EventConsumer) consume() error {
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Heartbeat:  5 * time.Second,
		Dial:       amqp.DefaultDial(2 * time.Second),
		Properties: amqp.Table{"connection_name": "faulttest events consumer"},
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(200, 0, false); err != nil {
		return err
	}
	msgs, err := ch.Consume(c.queue, "", false, false, false, false, nil)
	if err != nil {
		return err // most likely: claimd has not declared the queue yet
	}
	c.mu.Lock()
	c.connects++
	c.mu.Unlock()
	for {
		select {
		case <-c.stop:
			return nil
		case m, ok := <-msgs:
			if !ok {
				return errors.New("the broker closed the consumer's channel")
			}
			c.record(m)
			if err := m.Ack(false); err != nil {
				return err // redelivered later: a duplicate, as at least once allows
			}
		}
	}
}

// record parses and validates a delivery and keeps it.
func (c *EventConsumer) record(m amqp.Delivery) {
	d := Delivery{MessageID: m.MessageId, RoutingKey: m.RoutingKey, Redelivered: m.Redelivered, Body: slices.Clone(m.Body)}
	var body struct {
		EventID   string `json:"event_id"`
		Type      string `json:"type"`
		ID        string `json:"id"`
		ClaimID   string `json:"claim_id"`
		Status    string `json:"status"`
		NetFee    int64  `json:"net_fee_cents"`
		Providers []struct {
			NPI   string `json:"provider_npi"`
			Cents int64  `json:"net_fee_cents"`
		} `json:"providers"`
	}
	if err := json.Unmarshal(m.Body, &body); err != nil {
		d.Invalid = err
	} else {
		d.EventID, d.Type, d.ID, d.ClaimID, d.Status, d.NetFee = body.EventID, body.Type, body.ID, body.ClaimID, body.Status, body.NetFee
		d.Fees = map[string]int64{}
		for _, p := range body.Providers {
			d.Fees[p.NPI] += p.Cents
		}
		d.Invalid = events.Validate(m.Body)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deliveries = append(c.deliveries, d)
}

// Reversals is the reversal load: while a Load runs, it reverses every
// every-th of its claims once acknowledged, the way the payment service
// would after a failed payment, retrying the same request (a reversal is
// idempotent) on no answer, 409, 429 or 5xx, like Sender does for claims.
type Reversals struct {
	t       testing.TB
	load    *Load
	every   int
	targets []string
	client  *http.Client

	Sent        atomic.Int64 // claims whose reversal was sent
	Requests    atomic.Int64 // every attempt
	Acked       atomic.Int64 // claims whose reversal was answered 200
	Unavailable atomic.Int64 // 503 answers
	Other5xx    atomic.Int64 // other 5xx answers
	NoAnswer    atomic.Int64 // attempts without an answer
	Refused     atomic.Int64 // claims whose reversal was refused with a final 4xx

	mu       sync.Mutex
	problems []string
	done     chan struct{}
}

// reversalWorkers is how many reversals are in flight at once.
const reversalWorkers = 3

// reversalRetryFor bounds how long one reversal is retried: as a claim is
// (see NewSender), longer than any outage the suite causes.
const reversalRetryFor = 45 * time.Second

// reversalReasons are the reasons the reversal load gives, in turn.
var reversalReasons = []string{"payment_failed", "sent_in_error", "other"}

// StartReversals starts reversing every every-th claim of load (by index,
// starting with the first) as soon as it is acknowledged, spread over
// targets; load must be started. It stops once the load is over and every
// such claim acknowledged by then was reversed or given up.
func StartReversals(t testing.TB, load *Load, every int, targets ...string) *Reversals {
	r := &Reversals{t: t, load: load, every: every, targets: targets, done: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: reversalWorkers, IdleConnTimeout: 30 * time.Second}}}
	claims := slices.Clone(load.Claims)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := range reversalWorkers {
		wg.Go(func() {
			for i := range work {
				r.reverse(i, claims[i], w)
			}
		})
	}
	go func() {
		defer close(r.done)
		defer wg.Wait()
		defer close(work)
		picked := map[int]bool{}
		for {
			over := load.Done() // read first: a claim acknowledged before it is seen below
			for i := 0; i < len(claims); i += every {
				if !picked[i] && claims[i].Outcome() == loadkit.Acked {
					picked[i] = true
					work <- i
				}
			}
			if over {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return r
}

// Wait waits until the reversal load is over.
func (r *Reversals) Wait() {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(2 * reversalRetryFor):
		r.t.Fatalf("the reversal load did not stop within %s", 2*reversalRetryFor)
	}
}

// Problems lists the answers that broke the API contract.
func (r *Reversals) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.problems)
}

func (r *Reversals) addProblem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// String is the reversal load's figures, for a scenario's report.
func (r *Reversals) String() string {
	return fmt.Sprintf("reversals sent %d, acknowledged (200) %d, refused %d; requests %d, 503 %d, other 5xx %d, no answer %d",
		r.Sent.Load(), r.Acked.Load(), r.Refused.Load(), r.Requests.Load(), r.Unavailable.Load(), r.Other5xx.Load(), r.NoAnswer.Load())
}

// reverse reverses claim i, named by its id or (every other one) its
// claim_id, with one of the reasons, and some with an Idempotency-Key,
// sending the same request until a final answer.
func (r *Reversals) reverse(i int, c *Claim, worker int) {
	ids := c.AckedIDs()
	if len(ids) != 1 {
		r.addProblem("claim %s: acknowledged as %v, not one id; not reversed", c.ExternalID, ids)
		return
	}
	ref := ids[0]
	if (i/r.every)%2 == 1 {
		ref = c.ExternalID
	}
	reason := reversalReasons[(i/r.every)%len(reversalReasons)]
	body := fmt.Appendf(nil, `{"reason": %q, "detail": "faulttest reversal of %s"}`, reason, c.ExternalID)
	key := ""
	if (i/r.every)%4 == 3 {
		key = "rev-" + c.ExternalID
	}
	c.mu.Lock()
	c.reversalSent = true
	c.mu.Unlock()
	r.Sent.Add(1)

	deadline := time.Now().Add(reversalRetryFor)
	backoff := 50 * time.Millisecond
	for n := 0; ; n++ {
		target := r.targets[(worker+n)%len(r.targets)]
		final, retryAfter := r.attempt(c, target+"/claims/"+ref+"/reversal", body, key, ids[0], reason)
		if final {
			return
		}
		wait := backoff + rand.N(backoff)
		backoff = min(2*backoff, time.Second)
		if retryAfter > 0 {
			wait = min(retryAfter, 2*time.Second)
		}
		if time.Now().Add(wait).After(deadline) {
			r.addProblem("claim %s: reversal without a final answer after %d attempts: %v", c.ExternalID, n+1, c.History())
			return
		}
		time.Sleep(wait)
	}
}

// attempt posts a reversal once; it reports whether the answer was final,
// and the Retry-After it carried.
func (r *Reversals) attempt(c *Claim, url string, body []byte, key, id, reason string) (final bool, retryAfter time.Duration) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		panic(err) // a fixed method and a valid URL
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	r.Requests.Add(1)
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		r.NoAnswer.Add(1)
		c.addHistory(fmt.Sprintf("reversal: %s no answer (%v)", since(start), err))
		return false, 0
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		r.NoAnswer.Add(1)
		c.addHistory(fmt.Sprintf("reversal: %s cut off", since(start)))
		return false, 0
	}
	c.addHistory(fmt.Sprintf("reversal: %s %d", since(start), resp.StatusCode))
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		retryAfter = time.Duration(secs) * time.Second
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		var got struct {
			ID      string `json:"id"`
			ClaimID string `json:"claim_id"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
		}
		if err := json.Unmarshal(answer, &got); err != nil || got.ID != id || got.ClaimID != c.ExternalID ||
			got.Status != "reversed" || got.Reason != reason {
			r.addProblem("claim %s: reversal answered 200 with %s, want id %s, status reversed, reason %s",
				c.ExternalID, loadkit.Snippet(answer), id, reason)
			return true, 0
		}
		c.mu.Lock()
		c.reversed = true
		c.mu.Unlock()
		r.Acked.Add(1)
		return true, 0
	case code == http.StatusServiceUnavailable || code == http.StatusConflict || code == http.StatusTooManyRequests:
		if code == http.StatusServiceUnavailable {
			r.Unavailable.Add(1)
		}
		if code != http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			r.addProblem("claim %s: reversal answered %d without Retry-After: %s", c.ExternalID, code, loadkit.Snippet(answer))
		}
		return false, retryAfter
	case code >= 500:
		r.Other5xx.Add(1)
		r.addProblem("claim %s: reversal answered %d: %s", c.ExternalID, code, loadkit.Snippet(answer))
		return false, retryAfter
	default:
		r.Refused.Add(1)
		r.addProblem("claim %s: reversal refused with %d: %s", c.ExternalID, code, loadkit.Snippet(answer))
		return true, 0
	}
}

// EventsReport is what the test consumer received, for a scenario's report.
type EventsReport struct {
	Received    int // deliveries
	Duplicates  int // deliveries of an event_id received before
	Redelivered int // deliveries the broker marked redelivered (an ack lost); the other duplicates were published again
	Distinct    int // event_ids
	Stored      int // distinct claim.stored events
	Reversed    int // distinct claim.reversed events
	Lost        int // events a claim in Postgres must have and the consumer never received
	Connects    int // how often the consumer (re)connected
	Waited      time.Duration
}

// eventsDrainTimeout bounds how long CheckEvents waits for the outbox to be
// published and the queue consumed once the load is over.
const eventsDrainTimeout = 60 * time.Second

// CheckEvents waits, up to eventsDrainTimeout, until the outbox holds no
// unsent event, the running instances among instances report
// claimd_outbox_unsent_events 0, the consumer has received an event of each
// kind every claim in Postgres must have and the queue holds no message;
// then it stops the consumer and checks what it received, deduplicated by
// event_id, against Postgres: exactly one claim.stored per stored claim and
// one claim.reversed per reversed claim (so none lost, and none of a
// transaction that rolled back: its claim is not in Postgres, or stored or
// reversed again by a retry, whose event would be a second one), none of a
// claim not in Postgres; every body valid against its schema and
// consistent with the claim; a duplicate delivery identical to the first;
// the totals the events add up to equal to provider_totals; and each
// claim's events first received in commit order. It fails the test with
// every problem found.
func CheckEvents(t testing.TB, consumer *EventConsumer, db, brokerURL string, instances ...*Claimd) EventsReport {
	t.Helper()
	start := time.Now()
	lastLog := start
	var why error
	for {
		why = eventsDrained(db, brokerURL, consumer, instances)
		if why == nil {
			break
		}
		if time.Since(start) > eventsDrainTimeout {
			consumer.mu.Lock()
			lastErr := consumer.lastErr
			consumer.mu.Unlock()
			t.Fatalf("events not drained after %s: %v (consumer: %d connections, last error %v)",
				eventsDrainTimeout, why, consumer.Connects(), lastErr)
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			t.Logf("waiting %s for the events to drain: %v", time.Since(start).Round(time.Second), why)
		}
		time.Sleep(200 * time.Millisecond)
	}
	consumer.Stop()
	waited := time.Since(start)

	pg, err := readEventsState(db)
	if err != nil {
		t.Fatalf("read postgres: %v", err)
	}
	problems, report := checkEvents(consumer.Deliveries(), pg)
	report.Waited, report.Connects = waited, consumer.Connects()
	if len(problems) > 0 {
		const show = 40
		more := ""
		if len(problems) > show {
			more = fmt.Sprintf("\n... and %d more", len(problems)-show)
			problems = problems[:show]
		}
		t.Fatalf("events: %d problems (received %d, distinct %d, duplicates %d):\n%s%s",
			len(problems), report.Received, report.Distinct, report.Duplicates, strings.Join(problems, "\n"), more)
	}
	return report
}

// checkEvents compares the deliveries with Postgres once (see CheckEvents)
// and lists what is wrong.
func checkEvents(deliveries []Delivery, pg *eventsState) ([]string, EventsReport) {
	var (
		problems []string
		report   EventsReport
	)
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	first := map[string]Delivery{} // event_id -> its first delivery
	order := map[string]int{}      // event_id -> the position of its first delivery
	for n, d := range deliveries {
		report.Received++
		if d.Redelivered {
			report.Redelivered++
		}
		if d.Invalid != nil {
			bad("delivery %d (message_id %s): invalid event: %v: %s", n, d.MessageID, d.Invalid, loadkit.Snippet(d.Body))
			continue
		}
		if d.MessageID != d.EventID || d.RoutingKey != d.Type {
			bad("event %s: message_id %q, routing key %q, type %q", d.EventID, d.MessageID, d.RoutingKey, d.Type)
		}
		if f, seen := first[d.EventID]; seen {
			report.Duplicates++
			if !bytes.Equal(f.Body, d.Body) {
				bad("event %s delivered twice with different bodies:\n%s\n%s", d.EventID, f.Body, d.Body)
			}
			continue
		}
		first[d.EventID], order[d.EventID] = d, n
	}
	report.Distinct = len(first)

	// Per claim: one claim.stored per stored claim, one claim.reversed per
	// reversed one, consistent with the claim, stored first.
	byClaim := map[string]map[string][]Delivery{} // claim id -> type -> distinct events
	for _, d := range first {
		if byClaim[d.ID] == nil {
			byClaim[d.ID] = map[string][]Delivery{}
		}
		byClaim[d.ID][d.Type] = append(byClaim[d.ID][d.Type], d)
		switch d.Type {
		case events.TypeStored:
			report.Stored++
		case events.TypeReversed:
			report.Reversed++
		}
	}
	for id, byType := range byClaim {
		if _, ok := pg.claims[id]; !ok {
			bad("claim %s has %d events but is not in Postgres: an event of a transaction that rolled back", id, len(byType))
		}
	}
	eventTotals := map[string]int64{}
	for _, id := range slices.Sorted(maps.Keys(pg.claims)) {
		c := pg.claims[id]
		wantReversed := 0
		if c.status == "reversed" {
			wantReversed = 1
		}
		stored, reversed := byClaim[id][events.TypeStored], byClaim[id][events.TypeReversed]
		report.Lost += max(0, 1-len(stored)) + max(0, wantReversed-len(reversed))
		if len(stored) != 1 || len(reversed) != wantReversed {
			bad("claim %s (claim_id %s, %s): %d distinct claim.stored and %d claim.reversed events, want 1 and %d",
				id, c.externalID, c.status, len(stored), len(reversed), wantReversed)
		}
		for _, d := range append(slices.Clone(stored), reversed...) {
			wantStatus := "stored"
			if d.Type == events.TypeReversed {
				wantStatus = "reversed"
			}
			if d.ClaimID != c.externalID || d.NetFee != c.netFee || d.Status != wantStatus {
				bad("event %s (%s) of claim %s says claim_id %q, net_fee_cents %d, status %q; Postgres has %q, %d, and the event must say %q",
					d.EventID, d.Type, id, d.ClaimID, d.NetFee, d.Status, c.externalID, c.netFee, wantStatus)
			}
			sign := int64(1)
			if d.Type == events.TypeReversed {
				sign = -1
			}
			for npi, cents := range d.Fees {
				eventTotals[npi] += sign * cents
			}
		}
		if len(stored) == 1 && len(reversed) == 1 && order[reversed[0].EventID] < order[stored[0].EventID] {
			bad("claim %s: its claim.reversed (delivery %d) came before its claim.stored (delivery %d)",
				id, order[reversed[0].EventID], order[stored[0].EventID])
		}
	}
	diffTotals("provider totals from the events vs provider_totals", eventTotals, pg.totals, bad)
	return problems, report
}

// eventsDrained says why the events are not all delivered yet, or nil.
func eventsDrained(db, brokerURL string, consumer *EventConsumer, instances []*Claimd) error {
	pg, err := readEventsState(db)
	if err != nil {
		return fmt.Errorf("read postgres: %w", err)
	}
	if pg.unsent > 0 {
		return fmt.Errorf("%d events of the outbox unsent", pg.unsent)
	}
	for _, cd := range instances {
		if !cd.Running() {
			continue
		}
		v, found, err := loadkit.ScrapeSample(context.Background(), cd.BaseURL(), "claimd_outbox_unsent_events")
		switch {
		case err != nil:
			return fmt.Errorf("claimd %s /metrics: %w", cd.Name(), err)
		case !found:
			return fmt.Errorf("claimd %s exposes no claimd_outbox_unsent_events", cd.Name())
		case v != 0:
			return fmt.Errorf("claimd %s reports claimd_outbox_unsent_events %g", cd.Name(), v)
		}
	}
	got := map[string]bool{} // claim id + type
	for _, d := range consumer.Deliveries() {
		got[d.ID+" "+d.Type] = true
	}
	missing := 0
	for id, c := range pg.claims {
		if !got[id+" "+events.TypeStored] {
			missing++
		}
		if c.status == "reversed" && !got[id+" "+events.TypeReversed] {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d events of the %d claims in Postgres not received yet", missing, len(pg.claims))
	}
	ready, err := queueMessages(brokerURL, consumer.queue)
	if err != nil {
		return fmt.Errorf("queue %s: %w", consumer.queue, err)
	}
	if ready > 0 {
		return fmt.Errorf("queue %s holds %d ready messages", consumer.queue, ready)
	}
	return nil
}

// queueMessages is how many messages ready for delivery queue holds.
func queueMessages(url, queue string) (int, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return -1, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// eventsState is what Postgres says of the claims and their events.
type eventsState struct {
	claims map[string]eventsClaim // claims.id -> the claim
	unsent int                    // events in the outbox not yet confirmed by the broker
	totals map[string]int64       // provider_totals
}

type eventsClaim struct {
	externalID string
	netFee     int64
	status     string
}

// outboxUnsentSQL counts the events waiting in the outbox: the relay
// deletes an event once the broker confirmed it.
const outboxUnsentSQL = `SELECT coalesce(sum(cardinality(event_ids)), 0) FROM outbox`

// readEventsState reads the claims, the outbox and the totals in one
// repeatable-read snapshot.
func readEventsState(url string) (*eventsState, error) {
	st := &eventsState{claims: map[string]eventsClaim{}}
	err := inSnapshot(url, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, COALESCE(external_id, ''), net_fee_cents, status FROM claims`)
		if err != nil {
			return err
		}
		var (
			id string
			c  eventsClaim
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &c.externalID, &c.netFee, &c.status}, func() error {
			st.claims[id] = c
			return nil
		}); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, outboxUnsentSQL).Scan(&st.unsent); err != nil {
			return err
		}
		st.totals, err = loadkit.ProviderTotals(ctx, tx, nil)
		return err
	})
	return st, err
}

// LogEvents writes a scenario's closing line about reversals and events.
func LogEvents(t testing.TB, scenario string, load *Load, r *Reversals, e EventsReport) {
	t.Helper()
	n := load.Count()
	t.Logf("scenario %s: claims sent %d, acknowledged %d; %s; events received %d, duplicates %d (redelivered %d), distinct %d "+
		"(claim.stored %d, claim.reversed %d), lost %d; consumer connections %d; waited %s for the events to drain",
		scenario, len(load.Claims), n[loadkit.Acked], r, e.Received, e.Duplicates, e.Redelivered, e.Distinct, e.Stored, e.Reversed, e.Lost,
		e.Connects, e.Waited.Round(time.Millisecond))
}
