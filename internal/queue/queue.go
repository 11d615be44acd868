// Package queue is the asynchronous ingestion path over RabbitMQ: the API
// publishes each validated claim as a persistent message and answers 202 once
// the broker has confirmed it (publish.go); workers consume the queue and
// store claims through the same pipeline as the synchronous path, acking only
// after the commit (worker.go); a claim that cannot be stored goes to a
// dead-letter queue an operator can list, replay and purge (deadletter.go);
// the status of a queued claim is kept in Redis (status.go).
//
// Delivery is at least once: a claim delivered again carries the id it was
// accepted under, and storing it again is a no-op.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/claim"
)

// Config names the broker and the queue.
type Config struct {
	// URL is the broker's amqp:// URL, or the URLs of a cluster's nodes,
	// comma-separated. A client connects to the first listed node that
	// answers and, when its connection ends (the node died), to the next one
	// that does.
	URL string
	// Queue is the durable quorum queue of claims; dead letters go to
	// Queue + ".dead". Default DefaultQueue.
	Queue string
	// DeliveryLimit is how many times a message may return to the queue
	// (nacked, or its consumer gone) before the broker dead-letters it: it
	// is delivered at most DeliveryLimit+1 times. RabbitMQ 3.10 has no
	// default (unlimited), so it is always set. A worker that crashes returns
	// what it held, and RabbitMQ may count that twice (it can hand a message
	// to another channel of the dead connection before it notices), so the
	// limit must allow for crashes. Default DefaultDeliveryLimit.
	DeliveryLimit int
	// Replicas is on how many nodes of a cluster the queue and its
	// dead-letter queue are created (x-quorum-initial-group-size; the
	// broker caps it at the cluster's size). It matters only when a queue is
	// created, but RabbitMQ refuses a declaration whose value differs from
	// the queue's, absent counting as a value of its own, so every process
	// declaring the queue must agree. Default: DefaultReplicas when URL lists
	// several nodes; with one node the argument is left out, as it always
	// was, so queues declared before stay valid. Negative leaves it out with
	// several nodes too: for a queue created before the cluster was listed.
	Replicas int
}

// The defaults of the settings an operator tunes, in Config, PublisherConfig,
// StatusConfig and WorkerConfig.
const (
	DefaultQueue          = "claims"
	DefaultDeliveryLimit  = 10
	DefaultReplicas       = 3
	DefaultConfirmTimeout = 2 * time.Second
	DefaultStatusTTL      = 7 * 24 * time.Hour
	DefaultConsumers      = 2
	DefaultPrefetch       = 256
	DefaultDrainTimeout   = 20 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.DeliveryLimit <= 0 {
		c.DeliveryLimit = DefaultDeliveryLimit
	}
	if c.Replicas == 0 && len(Nodes(c.URL)) > 1 {
		c.Replicas = DefaultReplicas
	}
	return c
}

// DeadLetterQueue is the name of the queue's dead-letter queue.
func (c Config) DeadLetterQueue() string { return c.withDefaults().Queue + ".dead" }

// errBrokerDown refuses a claim while the broker cannot be reached: nothing
// was published, so a retry cannot store it twice.
var errBrokerDown = &claim.RetryAfter{
	Err: errors.Join(claim.ErrUnavailable, errors.New("the message broker is unavailable")), After: time.Second,
}

// declare declares the queue and its dead-letter queue. Both are durable
// quorum queues (replicated, and fsynced before a publish is confirmed). The
// dead-letter strategy at-least-once keeps a dead letter until the
// dead-letter queue has it, which RabbitMQ allows only with reject-publish
// overflow. Declaring with arguments other than those of an existing queue
// fails; the error says so.
func declare(ch *amqp.Channel, cfg Config) error {
	dead := cfg.DeadLetterQueue()
	deadArgs := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	args := amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-delivery-limit":          int64(cfg.DeliveryLimit),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": dead,
		"x-dead-letter-strategy":    "at-least-once",
		amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish,
	}
	if cfg.Replicas > 0 {
		deadArgs["x-quorum-initial-group-size"] = int64(cfg.Replicas)
		args["x-quorum-initial-group-size"] = int64(cfg.Replicas)
	}
	const differs = "if it exists with other arguments, e.g. another delivery limit, or replicas where RABBITMQ_URL " +
		"listed one node and now lists several (or the other way round), delete it or keep its settings"
	if _, err := ch.QueueDeclare(dead, true, false, false, false, deadArgs); err != nil {
		return fmt.Errorf("declare queue %s (%s): %w", dead, differs, err)
	}
	if _, err := ch.QueueDeclare(cfg.Queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s (%s): %w", cfg.Queue, differs, err)
	}
	return nil
}

// link keeps one connection to the broker up: it dials, lets its owner set
// up channels on the new connection, and when the connection (or any of its
// channels) closes, dials again with backoff, until stopped. With several
// nodes in url it dials the first listed first, and after a connection ends
// the node after its own: that node has most likely died.
type link struct {
	url   string // Config.URL: one node, or several
	role  string // publisher or worker, for logs and metrics
	log   *slog.Logger
	m     *metrics
	setup func(*amqp.Connection) error // channels on a new connection; an error redials
	down  func()                       // the connection is gone: forget its channels

	next int // the index in Nodes(url) of the node dialed first; only run uses it

	mu   sync.Mutex
	conn *amqp.Connection // nil while down
}

// run keeps the link up until ctx is done, then closes the connection.
func (l *link) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, node, err := l.connect()
		if err != nil {
			l.m.connected.WithLabelValues(l.role).Set(0)
			l.log.Warn("message broker unreachable; retrying", "role", l.role, "retry_in_seconds", backoff.Seconds(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		l.m.connected.WithLabelValues(l.role).Set(1)
		l.m.connects.WithLabelValues(l.role).Inc()
		l.log.Info("connected to the message broker", "role", l.role, "node", node)
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		select {
		case <-ctx.Done():
			l.drop(conn)
			_ = conn.Close()
			return
		case err := <-closed:
			l.drop(conn)
			l.log.Warn("message broker connection lost; reconnecting", "role", l.role, "node", node, "err", err)
		}
	}
}

// connect dials a node and sets the connection up; it returns the node's
// name (host:port) for the logs.
func (l *link) connect() (*amqp.Connection, string, error) {
	nodes := Nodes(l.url)
	conn, k, err := Dial(nodes, l.next, amqp.Config{
		Heartbeat: 5 * time.Second,
		Locale:    "en_US",
		Dial:      amqp.DefaultDial(2 * time.Second),
		Properties: amqp.Table{
			"connection_name": "claimd " + l.role,
		},
	})
	if err != nil {
		return nil, "", err
	}
	// Next time, the node after this one: also when setup fails here (say,
	// a node cut off from the others, which cannot declare the queue).
	l.next = (k + 1) % len(nodes)
	node := NodeName(nodes, k)
	if err := l.setup(conn); err != nil {
		_ = conn.Close()
		return nil, "", fmt.Errorf("%s: %w", node, err)
	}
	l.mu.Lock()
	l.conn = conn
	l.mu.Unlock()
	return conn, node, nil
}

// reset closes the connection, if up: run then dials again (the next node
// first) and the owner sets up new channels. For a channel the broker has
// given up on without closing it (see Publisher.Enqueue).
func (l *link) reset() {
	l.mu.Lock()
	conn := l.conn
	l.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

func (l *link) drop(conn *amqp.Connection) {
	l.mu.Lock()
	if l.conn == conn {
		l.conn = nil
	}
	l.mu.Unlock()
	l.down()
	l.m.connected.WithLabelValues(l.role).Set(0)
}

// closeOnChannelClose closes the connection when ch closes (the broker
// closes a channel on an error, e.g. a deleted queue), so that the link
// sets everything up again on a new connection.
// The goroutine joins wg; it ends when the channel closes, at the latest
// with its connection.
func closeOnChannelClose(conn *amqp.Connection, ch *amqp.Channel, wg *sync.WaitGroup) {
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	wg.Go(func() {
		if err := <-closed; err != nil {
			_ = conn.Close()
		}
	})
}

type metrics struct {
	connected      *prometheus.GaugeVec
	connects       *prometheus.CounterVec
	published      prometheus.Counter
	confirmed      prometheus.Counter
	refused        *prometheus.CounterVec
	confirmLatency prometheus.Histogram
	consumed       prometheus.Counter
	acked          prometheus.Counter
	redelivered    prometheus.Counter
	requeued       prometheus.Counter
	deadLettered   *prometheus.CounterVec
	depth          *prometheus.GaugeVec
	endToEnd       prometheus.Histogram
}

// Metrics are the queue's Prometheus metrics; one set per process.
type Metrics = metrics

// NewMetrics registers the queue's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "claimd"
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "rabbitmq_connected",
			Help: "1 while the connection to RabbitMQ is up and its channels are set up, else 0; by role (publisher or worker).",
		}, []string{"role"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "rabbitmq_connects_total",
			Help: "Connections to RabbitMQ established (the first and every reconnection), by role.",
		}, []string{"role"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_published_total",
			Help: "Claims published to the queue (before the broker's confirm).",
		}),
		confirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_confirmed_total",
			Help: "Published claims the broker confirmed; each was answered 202.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_publish_refused_total",
			Help: "Claims not accepted for the queue, by reason: nack, returned (no queue), timeout, closed, unavailable (each answered 503: the broker did not take the claim), status (503: Redis could not record it as queued), client_cap (429: the client has the most queued claims allowed).",
		}, []string{"reason"}),
		confirmLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "queue_publish_confirm_seconds",
			Help:    "Time from publishing a claim to the broker's confirm.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
		}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_consumed_total",
			Help: "Messages delivered to this worker.",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_acked_total",
			Help: "Messages acknowledged after their claim was committed (or found stored already).",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_redelivered_total",
			Help: "Messages delivered to this worker that had been delivered before.",
		}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_requeued_total",
			Help: "Messages returned to the queue after an unexpected storage failure; each return counts toward the delivery limit.",
		}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "queue_dead_lettered_total",
			Help: "Messages this worker sent to the dead-letter queue, by reason: undecodable, invalid (the claim fails validation or reuses a claim_id or key), delivery_limit (failed on its last allowed delivery).",
		}, []string{"reason"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_messages",
			Help: "Messages in the queue as the broker last reported them, by queue (claims or dead_letter); sampled every few seconds.",
		}, []string{"queue"}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "queue_end_to_end_seconds",
			Help:    "Time from a claim's arrival (its received_at, before it is published and answered 202) to its commit by a worker.",
			Buckets: []float64{.005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30, 60, 300},
		}),
	}
	reg.MustRegister(m.connected, m.connects, m.published, m.confirmed, m.refused, m.confirmLatency,
		m.consumed, m.acked, m.redelivered, m.requeued, m.deadLettered, m.depth, m.endToEnd)
	return m
}

// watchDepth samples the depth of the queue and its dead-letter queue every
// interval until ctx is done, on a channel of its own of l's connection.
func watchDepth(ctx context.Context, l *link, cfg Config, m *metrics, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		l.mu.Lock()
		conn := l.conn
		l.mu.Unlock()
		if conn != nil {
			if ch, err := conn.Channel(); err == nil {
				for label, name := range map[string]string{"claims": cfg.Queue, "dead_letter": cfg.DeadLetterQueue()} {
					if q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err == nil {
						m.depth.WithLabelValues(label).Set(float64(q.Messages))
					}
				}
				_ = ch.Close()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
