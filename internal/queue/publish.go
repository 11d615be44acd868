package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/claim"
)

// PublisherConfig tunes the publisher.
type PublisherConfig struct {
	Config
	// ConfirmTimeout bounds the wait for the broker's confirm; past it the
	// claim is refused with 503. Default DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
	// Channels is how many channels publish at once. Default 4.
	Channels int
}

// Publisher puts accepted claims on the queue. It is safe for concurrent use.
type Publisher struct {
	cfg    PublisherConfig
	link   *link
	status *Status
	m      *metrics
	log    *slog.Logger

	mu        sync.RWMutex
	channels  []*pubChannel  // empty while the broker is down
	listeners sync.WaitGroup // one a channel, until its connection closes
	next      atomic.Uint64
}

// NewPublisher returns a publisher; Run connects it.
func NewPublisher(cfg PublisherConfig, status *Status, m *Metrics, log *slog.Logger) *Publisher {
	cfg.Config = cfg.Config.withDefaults()
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = DefaultConfirmTimeout
	}
	if cfg.Channels <= 0 {
		cfg.Channels = 4
	}
	p := &Publisher{cfg: cfg, status: status, m: m, log: log}
	p.link = &link{url: cfg.URL, role: "publisher", log: log, m: m, setup: p.setup, down: p.down}
	m.connected.WithLabelValues("publisher").Set(0)
	m.connects.WithLabelValues("publisher")
	for _, reason := range []string{"nack", "returned", "timeout", "closed", "unavailable", "status", "client_cap"} {
		m.refused.WithLabelValues(reason) // exported at 0 from the start: rates and alerts need no "absent"
	}
	return p
}

// Run keeps the publisher connected, reconnecting after a broker restart,
// until ctx is done. While it is down, Enqueue refuses claims at once.
func (p *Publisher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { watchDepth(ctx, p.link, p.cfg.Config, p.m, 5*time.Second) })
	p.link.run(ctx) // closes the connection: the listeners end
	wg.Wait()
	p.listeners.Wait()
}

// down forgets the channels of a connection that is gone.
func (p *Publisher) down() {
	p.mu.Lock()
	p.channels = nil
	p.mu.Unlock()
}

// setup declares the queues and opens the publishing channels on a new
// connection.
func (p *Publisher) setup(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := declare(ch, p.cfg.Config); err != nil {
		return err
	}
	_ = ch.Close()
	channels := make([]*pubChannel, p.cfg.Channels)
	for i := range channels {
		if channels[i], err = openPubChannel(conn, p.m, &p.listeners); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.channels = channels
	p.mu.Unlock()
	return nil
}

// Enqueue publishes a prepared claim as a persistent message, mandatory and
// confirmed, and returns once the broker has it. It first records the claim
// as queued (so GET /claims/{id} can tell it was accepted). Any failure is
// a claim.ErrUnavailable that says to retry: the claim was not accepted.
func (p *Publisher) Enqueue(ctx context.Context, c claim.Claim, idempotencyKey string) error {
	pc := p.channel()
	if pc == nil {
		p.m.refused.WithLabelValues("unavailable").Inc()
		return errBrokerDown
	}
	msg, err := newMessage(c, idempotencyKey)
	if err != nil {
		return err
	}
	if err := p.status.MarkQueued(ctx, c); errors.Is(err, claim.ErrTooManyQueued) {
		p.m.refused.WithLabelValues("client_cap").Inc()
		return err
	} else if err != nil {
		p.m.refused.WithLabelValues("status").Inc()
		return &claim.RetryAfter{Err: fmt.Errorf("%w: recording the claim as queued: %w", claim.ErrUnavailable, err), After: time.Second}
	}
	start := time.Now()
	reason, err := pc.publish(ctx, p.cfg.Queue, msg, p.cfg.ConfirmTimeout)
	if err != nil {
		p.m.refused.WithLabelValues(reason).Inc()
		if reason == "nack" {
			// RabbitMQ 3.10 nacks every later publish of a channel whose
			// first one found its quorum queue's leader on a dead node (the
			// channel keeps asking that node); nothing else nacks here, the
			// queue having no length limit. Channels of a new connection
			// start afresh, with the leader the cluster has elected since.
			p.link.reset()
		}
		if reason != "timeout" { // a late confirm may still come: then the claim is queued
			p.status.Forget(c.Sender, c.ID)
		}
		return &claim.RetryAfter{Err: fmt.Errorf("%w: %w", claim.ErrUnavailable, err), After: time.Second}
	}
	p.m.confirmLatency.Observe(time.Since(start).Seconds())
	p.m.confirmed.Inc()
	return nil
}

// Ready tells whether the publisher is connected.
func (p *Publisher) Ready(context.Context) error {
	if p.channel() == nil {
		return errors.New("not connected to the message broker")
	}
	return nil
}

func (p *Publisher) channel() *pubChannel {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.channels) == 0 {
		return nil
	}
	return p.channels[p.next.Add(1)%uint64(len(p.channels))]
}

// pubChannel is one channel in confirm mode. Its own goroutine reads the
// broker's returns and confirms in the order the broker sent them: a
// mandatory message that no queue took comes back as a return *before* its
// positive confirm, and the return channel is unbuffered, so the return is
// recorded before the confirm is read.
type pubChannel struct {
	ch *amqp.Channel
	m  *metrics

	publishMu sync.Mutex // delivery tags follow the order of publishes
	mu        sync.Mutex
	pending   map[uint64]*pendingConfirm
	byID      map[string]*pendingConfirm
	closed    bool
}

type pendingConfirm struct {
	id       string
	returned bool
	done     chan error // buffered
}

var (
	errNacked   = errors.New("the broker refused the message")
	errReturned = errors.New("no queue took the message")
	errClosed   = errors.New("the broker connection closed before the confirm")
)

func openPubChannel(conn *amqp.Connection, m *metrics, listeners *sync.WaitGroup) (*pubChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	pc := &pubChannel{ch: ch, m: m, pending: map[uint64]*pendingConfirm{}, byID: map[string]*pendingConfirm{}}
	returns := ch.NotifyReturn(make(chan amqp.Return))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1024))
	closeOnChannelClose(conn, ch, listeners)
	listeners.Go(func() { pc.listen(returns, confirms) })
	return pc, nil
}

func (pc *pubChannel) listen(returns <-chan amqp.Return, confirms <-chan amqp.Confirmation) {
	defer pc.failAll()
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			pc.mu.Lock()
			if w := pc.byID[r.MessageId]; w != nil {
				w.returned = true
			}
			pc.mu.Unlock()
		case c, ok := <-confirms:
			if !ok {
				return
			}
			pc.mu.Lock()
			w := pc.pending[c.DeliveryTag]
			delete(pc.pending, c.DeliveryTag)
			if w != nil {
				delete(pc.byID, w.id)
			}
			pc.mu.Unlock()
			switch {
			case w == nil:
			case !c.Ack:
				w.done <- errNacked
			case w.returned:
				w.done <- errReturned
			default:
				w.done <- nil
			}
		}
	}
}

// failAll answers every publish still waiting: the channel is gone.
func (pc *pubChannel) failAll() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.closed = true
	for tag, w := range pc.pending {
		w.done <- errClosed
		delete(pc.pending, tag)
	}
	clear(pc.byID)
}

// publish sends msg to queue and waits for the broker's confirm. reason
// names the failure for the metrics.
func (pc *pubChannel) publish(ctx context.Context, queue string, msg amqp.Publishing, timeout time.Duration) (reason string, err error) {
	w := &pendingConfirm{id: msg.MessageId, done: make(chan error, 1)}
	pc.publishMu.Lock()
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		pc.publishMu.Unlock()
		return "closed", errClosed
	}
	tag := pc.ch.GetNextPublishSeqNo()
	pc.pending[tag] = w
	pc.byID[w.id] = w
	pc.mu.Unlock()
	err = pc.ch.PublishWithContext(ctx, "", queue, true, false, msg)
	pc.publishMu.Unlock()
	if err != nil {
		pc.mu.Lock()
		delete(pc.pending, tag)
		delete(pc.byID, w.id)
		pc.mu.Unlock()
		return "unavailable", err
	}
	pc.m.published.Inc()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-w.done:
		switch {
		case err == nil:
			return "", nil
		case errors.Is(err, errNacked):
			return "nack", err
		case errors.Is(err, errReturned):
			return "returned", err
		default:
			return "closed", err
		}
	case <-timer.C:
		return "timeout", fmt.Errorf("no confirm from the broker within %s", timeout)
	case <-ctx.Done():
		return "timeout", ctx.Err()
	}
}
