package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
	amqp "github.com/rabbitmq/amqp091-go"
)

// DeadLetters is the operator's view of the dead-letter queue: claims the
// workers could not store. Listing takes every message and gives it back
// (unacknowledged); replay publishes chosen messages to the claims queue
// again, optionally with a corrected body, and removes them; purge removes
// them for good.
type DeadLetters struct {
	cfg    Config
	status *Status // may be nil
	conn   *amqp.Connection
}

// DeadLetter describes one message in the dead-letter queue. The body (the
// claim, with subscriber numbers) is only there when asked for.
type DeadLetter struct {
	MessageID  string          `json:"message_id"`
	ReceivedAt string          `json:"received_at,omitempty"`
	Reason     string          `json:"reason"` // as claimd_queue_dead_lettered_total says it; see deadLetterReason
	DeadAt     time.Time       `json:"dead_lettered_at,omitzero"`
	Bytes      int             `json:"bytes"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// OpenDeadLetters connects to the broker (the first node of cfg.URL that
// answers) and declares the queues.
func OpenDeadLetters(cfg Config, status *Status) (*DeadLetters, error) {
	cfg = cfg.withDefaults()
	conn, _, err := Dial(Nodes(cfg.URL), 0, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": "claimd dlq"}})
	if err != nil {
		return nil, fmt.Errorf("connect to the message broker: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = declare(ch, cfg)
		_ = ch.Close()
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &DeadLetters{cfg: cfg, status: status, conn: conn}, nil
}

// Close closes the connection.
func (d *DeadLetters) Close() error { return d.conn.Close() }

// List describes every dead letter, oldest first, with bodies when
// withBody.
func (d *DeadLetters) List(ctx context.Context, withBody bool) ([]DeadLetter, error) {
	var out []DeadLetter
	err := d.each(ctx, func(m amqp.Delivery) (action, error) {
		dl := describe(m)
		if withBody {
			if json.Valid(m.Body) {
				dl.Body = m.Body
			} else {
				dl.Body, _ = json.Marshal(string(m.Body))
			}
		}
		out = append(out, dl)
		return keep, nil
	})
	return out, err
}

// Replay publishes the dead letters with the given message ids (all of them
// when ids is empty) to the claims queue again and removes them from the
// dead-letter queue. bodies, by message id, replaces a message's body: a
// corrected claim. It returns how many it replayed.
func (d *DeadLetters) Replay(ctx context.Context, ids []string, bodies map[string][]byte) (int, error) {
	for id := range bodies {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			return 0, fmt.Errorf("a new body for %s, which is not among the messages to replay", id)
		}
	}
	pub, err := d.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	if err := pub.Confirm(false); err != nil {
		return 0, err
	}
	n := 0
	seen := map[string]bool{}
	err = d.each(ctx, func(m amqp.Delivery) (action, error) {
		if len(ids) > 0 && !slices.Contains(ids, m.MessageId) {
			return keep, nil
		}
		seen[m.MessageId] = true
		msg := amqp.Publishing{
			ContentType: m.ContentType, DeliveryMode: amqp.Persistent, MessageId: m.MessageId,
			Timestamp: m.Timestamp, Type: m.Type, Headers: amqp.Table{}, Body: m.Body,
		}
		for k, v := range m.Headers {
			if !strings.HasPrefix(k, "x-") { // the broker's death and delivery records stay behind
				msg.Headers[k] = v
			}
		}
		if body, ok := bodies[m.MessageId]; ok {
			msg.Body = body
		}
		conf, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", d.cfg.Queue, false, false, msg)
		if err != nil {
			return keep, err
		}
		if ok, err := conf.WaitContext(ctx); err != nil || !ok {
			return keep, errors.Join(errors.New("the broker did not confirm the replayed message"), err)
		}
		if d.status != nil {
			_ = d.status.update(m.MessageId, func(s *State) { s.Status, s.Reason = claim.StatusQueued, "" }) // best effort
		}
		n++
		return remove, nil
	})
	for id := range bodies {
		if !seen[id] && err == nil {
			err = fmt.Errorf("no dead letter %s", id)
		}
	}
	return n, err
}

// Purge removes the dead letters with the given message ids (all of them
// when ids is empty) for good. It returns how many it removed.
func (d *DeadLetters) Purge(ctx context.Context, ids []string) (int, error) {
	n := 0
	err := d.each(ctx, func(m amqp.Delivery) (action, error) {
		if len(ids) > 0 && !slices.Contains(ids, m.MessageId) {
			return keep, nil
		}
		if d.status != nil {
			_ = d.status.update(m.MessageId, func(s *State) { // best effort
				s.Status, s.Reason = claim.StatusDeadLettered, "purged from the dead-letter queue by an operator"
			})
		}
		n++
		return remove, nil
	})
	return n, err
}

type action int

const (
	keep   action = iota // left unacknowledged: back in the queue when the channel closes
	remove               // acknowledged: gone
)

// each gets every message in the dead-letter queue and applies fn. Kept
// messages return to the queue, in their order, when the channel closes.
// (It gets until the queue answers empty: the message count a quorum queue
// reports can lag behind.)
func (d *DeadLetters) each(ctx context.Context, fn func(amqp.Delivery) (action, error)) error {
	ch, err := d.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(d.cfg.DeadLetterQueue(), true, false, false, false, nil)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, ok, err := ch.Get(q.Name, false)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		act, err := fn(m)
		if act == remove {
			if aerr := m.Ack(false); aerr != nil {
				return errors.Join(err, aerr)
			}
		}
		if err != nil {
			return err
		}
	}
}

// deadLetterReason says why m was dead-lettered in the words of the
// claimd_queue_dead_lettered_total metric: undecodable (not a claim) or
// invalid (a claim the pipeline refuses), both of which the broker records
// as "rejected" by a worker, or delivery_limit (failed on its last allowed
// delivery). A reason of the broker's own (expired, maxlen) is given as the
// broker says it.
func deadLetterReason(m amqp.Delivery) string {
	reason, _ := m.Headers["x-first-death-reason"].(string)
	if reason != "rejected" {
		return reason
	}
	if _, err := decodeMessage(m); err != nil {
		return "undecodable" // as the worker decided: the same decoding
	}
	return "invalid"
}

func describe(m amqp.Delivery) DeadLetter {
	dl := DeadLetter{MessageID: m.MessageId, Bytes: len(m.Body)}
	dl.ReceivedAt, _ = m.Headers[headerReceivedAt].(string)
	dl.Reason = deadLetterReason(m)
	if deaths, ok := m.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		if death, ok := deaths[0].(amqp.Table); ok {
			dl.DeadAt, _ = death["time"].(time.Time)
		}
	}
	return dl
}
