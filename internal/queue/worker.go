package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/claim"
)

// Submitter stores claims: the synchronous pipeline (ingest.Service), whose
// group commit writes the claims of concurrent deliveries in one
// transaction per batch, each claim all or nothing.
type Submitter interface {
	Submit(ctx context.Context, req claim.Submission) (claim.Result, error)
}

// WorkerConfig tunes a worker process.
type WorkerConfig struct {
	Config
	// Consumers is how many channels consume the queue. Default DefaultConsumers.
	Consumers int
	// Prefetch is how many unacknowledged messages each consumer may hold.
	// Their claims are stored together, so it bounds the batches. Default
	// DefaultPrefetch.
	Prefetch int
	// DrainTimeout bounds how long stopping waits for the claims being
	// stored; those not stored by then are delivered again. Default
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// Worker consumes the queue and stores each claim through the pipeline,
// acking its message only after the claim is committed.
type Worker struct {
	cfg    WorkerConfig
	svc    Submitter
	status *Status
	m      *metrics
	log    *slog.Logger
	link   *link

	work     context.Context // the handlers'; ended only when draining times out
	handlers sync.WaitGroup
	// consumers' goroutines, one a channel, until its connection closes
	consuming sync.WaitGroup
	// stored takes the claims stored under their own id, whose status
	// entries are then deleted many per Redis round trip.
	stored chan storedClaim

	mu        sync.Mutex
	consumers []*amqp.Channel
	stopping  bool // no new handler starts once set
}

// consumerTag names the consumers on each channel.
const consumerTag = "claimd-worker"

// NewWorker returns a worker storing claims with svc; Run starts it.
func NewWorker(cfg WorkerConfig, svc Submitter, status *Status, m *Metrics, log *slog.Logger) *Worker {
	cfg.Config = cfg.Config.withDefaults()
	if cfg.Consumers <= 0 {
		cfg.Consumers = DefaultConsumers
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	w := &Worker{cfg: cfg, svc: svc, status: status, m: m, log: log, stored: make(chan storedClaim, 4096)}
	w.link = &link{url: cfg.URL, role: "worker", log: log, m: m, setup: w.setup, down: w.down}
	m.connected.WithLabelValues("worker").Set(0)
	m.connects.WithLabelValues("worker")
	for _, reason := range []string{"undecodable", "invalid", "delivery_limit"} {
		m.deadLettered.WithLabelValues(reason) // exported at 0 from the start
	}
	return w
}

// Run consumes until ctx is done, reconnecting after a broker restart. Then
// it stops consuming, waits (up to DrainTimeout) for the claims it holds to
// be stored and acked, and closes the connection; whatever was not acked is
// delivered again, to another worker or later.
func (w *Worker) Run(ctx context.Context) {
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	w.work = work
	linked := make(chan struct{})
	go func() {
		defer close(linked)
		w.link.run(linkCtx)
	}()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchDepth(linkCtx, w.link, w.cfg.Config, w.m, 5*time.Second)
	}()
	forgotten := make(chan struct{})
	go func() {
		defer close(forgotten)
		w.forgetStored()
	}()

	<-ctx.Done()
	w.mu.Lock() // after this no handler starts (see consume)
	w.stopping = true
	for _, ch := range w.consumers {
		_ = ch.Cancel(consumerTag, false)
	}
	w.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		w.handlers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn("claims still being stored at the end of the drain; they will be delivered again")
		stopWork()
		<-drained
	}
	stopWork()
	close(w.stored)
	<-forgotten
	stopLink()
	<-linked
	<-watched
	w.consuming.Wait()
}

// storedClaim names a claim stored under its own id, and its sender.
type storedClaim struct{ client, id string }

// forgetStored deletes the status entries of stored claims, gathering the
// claims that arrive within a few milliseconds into one round trip per
// client.
func (w *Worker) forgetStored() {
	byClient := map[string][]string{}
	for first := range w.stored {
		clear(byClient)
		byClient[first.client] = append(byClient[first.client], first.id)
		timeout := time.After(5 * time.Millisecond)
	gather:
		for n := 1; n < 512; n++ {
			select {
			case c, ok := <-w.stored:
				if !ok {
					break gather
				}
				byClient[c.client] = append(byClient[c.client], c.id)
			case <-timeout:
				break gather
			}
		}
		for client, ids := range byClient {
			w.status.Forget(client, ids...)
		}
	}
}

// Ready tells whether the worker is connected and consuming.
func (w *Worker) Ready(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.consumers) == 0 {
		return errors.New("not consuming: the message broker is unreachable")
	}
	return nil
}

// setup declares the queues and starts the consumers on a new connection.
func (w *Worker) setup(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := declare(ch, w.cfg.Config); err != nil {
		return err
	}
	_ = ch.Close()
	consumers := make([]*amqp.Channel, 0, w.cfg.Consumers)
	for range w.cfg.Consumers {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.Qos(w.cfg.Prefetch, 0, false); err != nil {
			return err
		}
		deliveries, err := ch.Consume(w.cfg.Queue, consumerTag, false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume %s: %w", w.cfg.Queue, err)
		}
		closeOnChannelClose(conn, ch, &w.consuming)
		consumers = append(consumers, ch)
		w.consuming.Go(func() { w.consume(deliveries) })
	}
	w.mu.Lock()
	w.consumers = consumers
	w.mu.Unlock()
	return nil
}

// down forgets the consumers of a connection that is gone.
func (w *Worker) down() {
	w.mu.Lock()
	w.consumers = nil
	w.mu.Unlock()
}

func (w *Worker) consume(deliveries <-chan amqp.Delivery) {
	for d := range deliveries {
		w.mu.Lock()
		if w.stopping {
			w.mu.Unlock()
			continue // not acked: delivered again after the channel closes
		}
		w.handlers.Add(1)
		w.mu.Unlock()
		go w.handle(d)
	}
}

// handle stores the claim of one delivery and settles the message:
//   - stored (or found stored: a delivery again): ack;
//   - not a claim, or a claim the pipeline refuses (invalid, claim_id or
//     key reused for another claim): straight to the dead-letter queue, as no
//     delivery can store it;
//   - storage unavailable: retried here, without counting toward the
//     delivery limit, until it works or the worker stops;
//   - any other failure: back to the queue after a pause; the broker
//     dead-letters the message once it reaches the delivery limit.
func (w *Worker) handle(d amqp.Delivery) {
	defer w.handlers.Done()
	w.m.consumed.Inc()
	if d.Redelivered {
		w.m.redelivered.Inc()
	}
	req, err := decodeMessage(d)
	if err != nil {
		w.log.Warn("dead-lettering a message that is not a claim", "message_id", d.MessageId, "err", err)
		w.m.deadLettered.WithLabelValues("undecodable").Inc()
		w.settle(d.Nack(false, false))
		return
	}
	res, err := w.store(req)
	switch {
	case err == nil:
		if res.Claim.ID == req.ID {
			select {
			case w.stored <- storedClaim{client: req.Client, id: req.ID}:
			default: // Redis is slow: the entry expires by itself, and Postgres answers first
			}
		} else if !w.record(req.ID, func(s *State) { s.Status, s.StoredAs = claim.StatusStored, res.Claim.ID }) {
			return // stopping: delivered again, it is resolved again
		}
		if res.Created {
			w.m.endToEnd.Observe(time.Since(req.ReceivedAt).Seconds())
		}
		if w.settle(d.Ack(false)) {
			w.m.acked.Inc()
		}
	case permanent(err):
		w.log.Warn("dead-lettering a claim the pipeline refuses", "claim", req.ID, "err", err)
		if !w.record(req.ID, func(s *State) { s.Status, s.Reason = claim.StatusDeadLettered, refusalReason(err) }) {
			return
		}
		w.m.deadLettered.WithLabelValues("invalid").Inc()
		w.settle(d.Nack(false, false))
	case w.work.Err() != nil:
		// Stopping: left unacked, the message is delivered again.
	default:
		returned := deliveryCount(d) // times it came back before this delivery
		deliveries := returned + 1
		if returned >= int64(w.cfg.DeliveryLimit) {
			w.log.Error("claim failed on its last allowed delivery; the broker dead-letters it",
				"claim", req.ID, "deliveries", deliveries, "err", err)
			reason := fmt.Sprintf("not stored after %d deliveries; the workers' log has the cause", deliveries)
			if !w.record(req.ID, func(s *State) { s.Status, s.Reason = claim.StatusDeadLettered, reason }) {
				return
			}
			w.m.deadLettered.WithLabelValues("delivery_limit").Inc()
		} else {
			w.log.Warn("claim not stored; returning it to the queue", "claim", req.ID, "deliveries", deliveries, "err", err)
		}
		select { // a pause, so a passing fault has time to pass
		case <-time.After(min(time.Duration(deliveries)*200*time.Millisecond, time.Second)):
		case <-w.work.Done():
		}
		w.m.requeued.Inc()
		w.settle(d.Nack(false, true))
	}
}

// store submits req, retrying while storage is unavailable.
func (w *Worker) store(req claim.Submission) (claim.Result, error) {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(w.work, 30*time.Second)
		res, err := w.svc.Submit(ctx, req)
		cancel()
		if err == nil || !transient(err) || w.work.Err() != nil {
			return res, err
		}
		select {
		case <-time.After(backoff):
		case <-w.work.Done():
			return res, err
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// record changes the status entry of a claim not stored under its own id,
// retrying while Redis fails: the message is settled only once GET
// /claims/{id} will tell what became of the claim. It is false when the
// worker stops first; the message is then left to be delivered again.
func (w *Worker) record(id string, change func(*State)) bool {
	backoff := 50 * time.Millisecond
	for {
		err := w.status.update(id, change)
		if err == nil {
			return true
		}
		w.log.Warn("cannot record a queued claim's status in Redis; retrying", "claim", id, "err", err)
		select {
		case <-time.After(backoff):
		case <-w.work.Done():
			return false
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// settle reports whether an ack or nack reached the broker. One that did
// not (the channel closed) needs nothing: the message is delivered again.
func (w *Worker) settle(err error) bool {
	if err != nil {
		w.log.Debug("message not settled; it will be delivered again", "err", err)
		return false
	}
	return true
}

// refusalReason says, for the claim's sender, why the pipeline refused it:
// the text of the refusal, which is the service's own (never a database's).
func refusalReason(err error) string {
	var (
		problems claim.Problems
		replaced *claim.AlreadyReplaced
	)
	switch {
	case errors.As(err, &problems):
		return problems.Error()
	case errors.As(err, &replaced):
		return replaced.Error()
	case errors.Is(err, claim.ErrClaimIDReused):
		return claim.ErrClaimIDReused.Error()
	case errors.Is(err, claim.ErrKeyReused):
		return claim.ErrKeyReused.Error()
	}
	return "refused"
}

// permanent tells whether err means no delivery can store the claim: a
// correction of a claim already replaced is one.
func permanent(err error) bool {
	var (
		problems claim.Problems
		replaced *claim.AlreadyReplaced
	)
	return errors.As(err, &problems) || errors.As(err, &replaced) ||
		errors.Is(err, claim.ErrClaimIDReused) || errors.Is(err, claim.ErrKeyReused)
}

// transient tells whether err means storage is unavailable for now.
func transient(err error) bool {
	return errors.Is(err, claim.ErrUnavailable) || errors.Is(err, claim.ErrBusy) ||
		errors.Is(err, claim.ErrKeyInFlight) || errors.Is(err, context.DeadlineExceeded)
}

// deliveryCount is how many times the broker delivered d before (quorum
// queues count in the x-delivery-count header).
func deliveryCount(d amqp.Delivery) int64 {
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		return n
	case int32:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}
