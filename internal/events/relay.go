package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/queue"
)

// Outbox is where the relay reads the events to publish: the Postgres store.
type Outbox interface {
	// TryRelayLock takes the lock that lets one instance at a time relay, on
	// a database session of its own, and returns that session: the relay
	// reads and marks events through it alone, so that an instance whose
	// session ended, and with it the lock, can mark nothing. ok is false
	// when another instance holds the lock.
	TryRelayLock(ctx context.Context) (s OutboxSession, ok bool, err error)
	// OutboxDepth says how many events are unsent and how long the oldest
	// of them has waited.
	OutboxDepth(ctx context.Context) (unsent int64, oldest time.Duration, err error)
}

// OutboxSession is the session that holds the relay's lock.
type OutboxSession interface {
	// UnsentEvents returns up to limit events not yet marked sent, in seq
	// order.
	UnsentEvents(ctx context.Context, limit int) ([]Row, error)
	// MarkEventsSent records that the broker confirmed every event of the
	// outbox rows seqs.
	MarkEventsSent(ctx context.Context, seqs []int64) error
	// Close ends the session, and with it the lock.
	Close()
}

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	// URL is the broker's amqp:// URL, or the URLs of a cluster's nodes,
	// comma-separated: RABBITMQ_URL, as internal/queue reads it.
	URL string
	// Exchange is the durable topic exchange events are published to, with
	// their type as the routing key. Default DefaultExchange.
	Exchange string
	// Queue is a durable quorum queue bound to Exchange with "claim.#", so
	// that events wait for a payments consumer that is not running yet.
	// Default DefaultQueue.
	Queue string
	// BatchSize is how many events are published before waiting for their
	// confirms. Default DefaultBatchSize.
	BatchSize int
	// Idle is how long the relay waits before looking again when nothing
	// was unsent. Default DefaultIdle.
	Idle time.Duration
	// ConfirmTimeout bounds the wait for a batch's confirms, from its last
	// publish. Past it the unconfirmed events stay unsent and the relay
	// reconnects. Default DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
	// LockRetry is how often an instance that does not relay (another holds
	// the lock) tries to take over. Default DefaultLockRetry.
	LockRetry time.Duration
	// DepthInterval is how often the outbox depth metrics are sampled.
	// Default DefaultDepthInterval.
	DepthInterval time.Duration
}

// The defaults of RelayConfig.
const (
	DefaultExchange       = "claim-events"
	DefaultQueue          = "payments.claim-events"
	DefaultBatchSize      = 500
	DefaultIdle           = 50 * time.Millisecond
	DefaultConfirmTimeout = 5 * time.Second
	DefaultLockRetry      = 2 * time.Second
	DefaultDepthInterval  = 5 * time.Second
)

// BindingKey binds Queue to Exchange: every event type.
const BindingKey = "claim.#"

const (
	// storeTimeout bounds each call to the outbox: a Postgres that stopped
	// answering must not hang the relay (it lets go of the lock and retries).
	storeTimeout = 30 * time.Second
	// quietFor is how often a failure that repeats is logged.
	quietFor   = time.Minute
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

func (c RelayConfig) withDefaults() RelayConfig {
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
	if c.LockRetry <= 0 {
		c.LockRetry = DefaultLockRetry
	}
	if c.DepthInterval <= 0 {
		c.DepthInterval = DefaultDepthInterval
	}
	return c
}

// Relay publishes the outbox's events to RabbitMQ: one instance at a time
// (a Postgres advisory lock), in seq order on one confirm-mode channel, and
// marks an event sent only after the broker confirmed it. Delivery is at
// least once: an event whose confirm was lost (a nack, a timeout, a
// connection that closed, an instance killed between confirm and mark) is
// published again, with the same message_id, and consumers deduplicate by
// event_id.
//
// Order: a batch is published in seq order, and on any failure only its
// confirmed prefix is marked sent, so an event is never marked while one
// before it in the batch is not. Per claim, that is commit order: a claim's
// later event is written by a transaction that begins after the one that
// wrote its earlier event committed, so it has the higher seq.
//
// The relay is independent of ingest: while the broker is away claims are
// still stored, their events wait in the outbox (claimd_outbox_unsent_events),
// and the relay retries with backoff, logging the failure once a minute.
type Relay struct {
	outbox Outbox
	cfg    RelayConfig
	m      *Metrics
	log    *slog.Logger

	next     int          // the index in queue.Nodes(cfg.URL) of the node dialed first; only Run uses it
	standbys atomic.Int64 // lock attempts that found another instance relaying (for tests)
}

// NewRelay returns a relay of outbox; Run starts it.
func NewRelay(outbox Outbox, cfg RelayConfig, m *Metrics, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m.active.Set(0)
	return &Relay{outbox: outbox, cfg: cfg.withDefaults(), m: m, log: log}
}

// failure is why a relay's run ended; reason labels
// claimd_events_publish_failures_total, empty for a failure of the outbox.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// Run relays until ctx is done: it takes the lock (or, while another
// instance holds it, tries again every LockRetry), connects, declares the
// exchange and the queue, and publishes until ctx is done or something
// fails; then it lets go of the lock and, after a backoff, starts over. It
// also samples the outbox depth every DepthInterval, lock or not. Run
// returns once its goroutine is done and the lock released; stop it before
// closing the store.
func (r *Relay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { r.watchDepth(ctx) })
	defer wg.Wait()

	var (
		backoff  = minBackoff
		standby  bool
		failures quiet
	)
	for ctx.Err() == nil {
		wait := r.cfg.LockRetry
		lockCtx, cancel := context.WithTimeout(ctx, storeTimeout)
		session, ok, err := r.outbox.TryRelayLock(lockCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if missed, ok := failures.allow(); ok {
				r.log.Warn("outbox relay cannot take its lock; retrying", "retry_in_seconds", wait.Seconds(),
					"failures_not_logged", missed, "err", err)
			}
		case !ok:
			r.standbys.Add(1)
			if !standby {
				r.log.Info("another instance relays the outbox; standing by")
				standby = true
			}
		default:
			standby = false
			r.m.active.Set(1)
			progressed, err := r.relay(ctx, session, &failures)
			session.Close()
			r.m.active.Set(0)
			if ctx.Err() != nil {
				return
			}
			if progressed {
				backoff = minBackoff
			}
			var f *failure
			if errors.As(err, &f) && f.reason != "" {
				r.m.failures.WithLabelValues(f.reason).Inc()
			}
			if missed, ok := failures.allow(); ok {
				r.log.Warn("outbox relay stopped; events wait in the outbox, retrying", "retry_in_seconds", backoff.Seconds(),
					"failures_not_logged", missed, "err", err)
			}
			// The lock is let go meanwhile: an instance that can reach the
			// broker, when this one cannot, may take over.
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// relay is one run with the lock held: it connects and publishes until ctx
// is done (nil) or something fails. progressed says whether it got as far
// as publishing a batch or finding nothing to publish.
func (r *Relay) relay(ctx context.Context, session OutboxSession, failures *quiet) (progressed bool, err error) {
	nodes := queue.Nodes(r.cfg.URL)
	var sock *corkedConn // the last dialed, which is the connection's when Dial succeeds
	dial := amqp.DefaultDial(2 * time.Second)
	conn, k, err := queue.Dial(nodes, r.next, amqp.Config{
		Heartbeat: 5 * time.Second,
		Locale:    "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := dial(network, addr)
			if err != nil {
				return nil, err
			}
			sock = &corkedConn{Conn: c}
			return sock, nil
		},
		Properties: amqp.Table{"connection_name": "claimd events relay"},
	})
	if err != nil {
		return false, &failure{reasonBrokerDown, err}
	}
	defer func() { _ = conn.Close() }()
	// Next time, the node after this one: most likely this one has died.
	r.next = (k + 1) % len(nodes)
	node := queue.NodeName(nodes, k)
	ch, err := r.setup(conn)
	if err != nil {
		return false, &failure{reasonBrokerDown, fmt.Errorf("%s: %w", node, err)}
	}
	// A returned message (mandatory, and no queue took it) comes back before
	// its confirm; buffered, so that the connection's reader never waits for
	// us, and read after each confirm. At most a batch is outstanding.
	returns := ch.NotifyReturn(make(chan amqp.Return, r.cfg.BatchSize))
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	missed := failures.reset()
	r.log.Info("outbox relay publishing", "node", node, "exchange", r.cfg.Exchange, "queue", r.cfg.Queue,
		"failures_not_logged", missed)

	for {
		rows, err := r.unsent(ctx, session)
		if err != nil {
			if ctx.Err() != nil {
				return progressed, nil
			}
			return progressed, &failure{err: err}
		}
		if len(rows) > 0 {
			n, err := r.publish(ctx, ch, sock, returns, rows)
			if n > 0 {
				if err := r.markSent(ctx, session, rows, n); err != nil {
					// Confirmed but not marked: published again later.
					return progressed, &failure{err: err}
				}
			}
			if err != nil || ctx.Err() != nil {
				return progressed || n > 0, err
			}
		}
		progressed = true
		if len(rows) >= r.cfg.BatchSize {
			continue // a backlog: on at once
		}
		// Caught up: wait Idle before reading again, so that each round of
		// reading, publishing, waiting for the confirms and deleting
		// carries Idle's worth of events rather than a group commit's
		// (its fixed costs, in Postgres and in the broker, are most of
		// the relay's), and an idle relay's polling of the outbox's
		// primary key costs next to nothing. An event waits at most about
		// Idle more. LISTEN/NOTIFY would wake the relay sooner, but a
		// NOTIFY takes a database-wide lock at commit: it would serialize
		// the claim transactions that the group commit runs side by side,
		// a cost on every claim for a gain of a few milliseconds.
		select {
		case <-ctx.Done():
			return progressed, nil
		case err := <-closed:
			return progressed, &failure{reasonBrokerDown, fmt.Errorf("%s: connection closed: %w", node, err)}
		case <-time.After(r.cfg.Idle):
		}
	}
}

// setup declares the exchange and the queue, binds them, and opens the
// confirm-mode channel events are published on.
func (r *Relay) setup(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare(r.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("declare exchange %s (if it exists as another type than a durable topic exchange, delete it): %w",
			r.cfg.Exchange, err)
	}
	// No x-quorum-initial-group-size: the broker's default (every node)
	// suits, and no argument means none to disagree about on redeclaring.
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if _, err := ch.QueueDeclare(r.cfg.Queue, true, false, false, false, args); err != nil {
		return nil, fmt.Errorf("declare queue %s (if it exists with other arguments, delete it or keep its settings): %w",
			r.cfg.Queue, err)
	}
	if err := ch.QueueBind(r.cfg.Queue, BindingKey, r.cfg.Exchange, false, nil); err != nil {
		return nil, fmt.Errorf("bind queue %s to exchange %s: %w", r.cfg.Queue, r.cfg.Exchange, err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	return ch, nil
}

// publish publishes rows in order, mandatory and persistent, then waits for
// their confirms, and returns how many of them, from the first, the broker
// confirmed: a nack, a return, a timeout or a closed channel ends the
// prefix, even if later ones were confirmed. Once publishing began, ctx only
// stops further publishes: the confirms of those sent are still awaited
// (up to ConfirmTimeout), so that a clean stop does not publish them twice.
//
// The batch's publishes leave in a few writes rather than one each: sock is
// corked while they are framed.
func (r *Relay) publish(ctx context.Context, ch *amqp.Channel, sock *corkedConn, returns <-chan amqp.Return, rows []Row) (int, error) {
	pending := make([]*amqp.DeferredConfirmation, 0, len(rows))
	var publishErr error
	sock.cork()
	for _, row := range rows {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, r.cfg.Exchange, row.RoutingKey, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			ContentType:  "application/json",
			MessageId:    row.EventID,
			Type:         row.RoutingKey,
			AppId:        "claimd",
			Body:         row.Body,
		})
		if err != nil {
			publishErr = err
			break
		}
		pending = append(pending, dc)
	}
	if err := sock.uncork(); err != nil && publishErr == nil {
		// The connection is closed: what was held is nacked below.
		publishErr = err
	}
	deadline := time.NewTimer(r.cfg.ConfirmTimeout)
	defer deadline.Stop()
	returned := map[string]bool{}
	for i, dc := range pending {
		select {
		case <-dc.Done():
		case <-deadline.C:
			return i, &failure{reasonTimeout, fmt.Errorf("no confirm from the broker within %s for %d of %d events",
				r.cfg.ConfirmTimeout, len(pending)-i, len(rows))}
		}
		if !dc.Acked() {
			if ch.IsClosed() { // closing nacks what was unconfirmed
				return i, &failure{reasonBrokerDown, errors.New("the channel closed before the broker confirmed every event")}
			}
			return i, &failure{reasonNack, fmt.Errorf("the broker refused event seq %d", rows[i].Seq)}
		}
		drain(returns, returned)
		if returned[rows[i].EventID] {
			return i, &failure{reasonUnroutable, fmt.Errorf("no queue took event seq %d (routing key %s): is %s bound to %s?",
				rows[i].Seq, rows[i].RoutingKey, r.cfg.Queue, r.cfg.Exchange)}
		}
	}
	switch {
	case publishErr == nil:
		return len(rows), nil
	case ctx.Err() != nil:
		return len(pending), nil
	default:
		return len(pending), &failure{reasonBrokerDown, fmt.Errorf("publish: %w", publishErr)}
	}
}

// drain moves the returns already delivered into returned, by message id.
func drain(returns <-chan amqp.Return, returned map[string]bool) {
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			returned[r.MessageId] = true
		default:
			return
		}
	}
}

func (r *Relay) unsent(ctx context.Context, session OutboxSession) ([]Row, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return session.UnsentEvents(ctx, r.cfg.BatchSize)
}

// markSent counts the first n of rows published, and marks sent the outbox
// rows whose events are all among them. It runs also when ctx was cancelled during
// the batch: those events are at the broker.
func (r *Relay) markSent(ctx context.Context, session OutboxSession, rows []Row, n int) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	// Counted first: they are confirmed whether or not the mark succeeds
	// (then they are published again, and counted again: at least once),
	// and whoever sees the outbox empty sees them counted.
	for _, row := range rows[:n] {
		r.m.published.WithLabelValues(typeLabel(row.RoutingKey)).Inc()
	}
	return session.MarkEventsSent(ctx, whole(rows, n))
}

// whole returns the outbox rows (seqs) all of whose events are among the
// first n of events, which come row after row: the row of events[n], if
// any, had some unconfirmed, and is published again whole.
func whole(events []Row, n int) []int64 {
	cut := int64(-1)
	if n < len(events) {
		cut = events[n].Seq
	}
	var seqs []int64
	for _, e := range events[:n] {
		if e.Seq != cut && (len(seqs) == 0 || seqs[len(seqs)-1] != e.Seq) {
			seqs = append(seqs, e.Seq)
		}
	}
	return seqs
}

// Depth samples the outbox depth into the metrics and returns it.
func (r *Relay) Depth(ctx context.Context) (unsent int64, oldest time.Duration, err error) {
	unsent, oldest, err = r.outbox.OutboxDepth(ctx)
	if err != nil {
		return 0, 0, err
	}
	r.m.unsent.Set(float64(unsent))
	r.m.oldest.Set(oldest.Seconds())
	return unsent, oldest, nil
}

// watchDepth samples the depth every DepthInterval until ctx is done.
func (r *Relay) watchDepth(ctx context.Context) {
	ticker := time.NewTicker(r.cfg.DepthInterval)
	defer ticker.Stop()
	var failures quiet
	for {
		depthCtx, cancel := context.WithTimeout(ctx, storeTimeout)
		_, _, err := r.Depth(depthCtx)
		cancel()
		if err != nil && ctx.Err() == nil {
			if missed, ok := failures.allow(); ok {
				r.log.Warn("outbox depth not read", "failures_not_logged", missed, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// quiet lets a failure that repeats be logged once per quietFor; the log
// says how many were not.
type quiet struct {
	last   time.Time
	missed int
}

// allow says whether to log a failure now, and how many were not logged
// since the last that was.
func (q *quiet) allow() (missed int, ok bool) {
	if now := time.Now(); q.last.IsZero() || now.Sub(q.last) >= quietFor {
		missed, q.missed, q.last = q.missed, 0, now
		return missed, true
	}
	q.missed++
	return 0, false
}

// reset forgets the failures, so that the next one is logged at once, and
// says how many were not logged.
func (q *quiet) reset() (missed int) {
	missed = q.missed
	*q = quiet{}
	return missed
}
