package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/events"
)

var _ events.Outbox = (*Store)(nil)

// relayLockKey is the advisory lock that lets one instance at a time relay
// the outbox to the broker; reconcileLockKey's neighbour.
const relayLockKey int64 = 0x636c61696d65 // "claime"

// TryRelayLock takes the outbox relay's lock if no other instance holds it,
// and returns the Postgres session that holds it, taken out of the pool: the
// relay reads and deletes events through that session alone, so that if the
// session ends (and the lock with it: another instance may take over) the
// relay can delete nothing more. Closing the session lets the lock go.
//
// The session does not wait for its commits to reach the disk: a delete lost
// in a crash only publishes its events again (delivery is at least once),
// and waiting would cost a disk flush for every batch the relay sends.
func (s *Store) TryRelayLock(ctx context.Context) (session events.OutboxSession, ok bool, err error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, wrap("relay lock", err)
	}
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", relayLockKey).Scan(&ok); err != nil {
		c.Release()
		return nil, false, wrap("relay lock", err)
	}
	if !ok {
		c.Release()
		return nil, false, nil
	}
	conn := c.Hijack()
	r := &relaySession{conn: conn}
	if _, err := conn.Exec(ctx, "SET synchronous_commit TO off"); err != nil {
		r.Close()
		return nil, false, wrap("relay lock", err)
	}
	return r, true, nil
}

// relaySession is the session that holds the relay lock (TryRelayLock).
type relaySession struct {
	conn *pgx.Conn
}

// Close lets the lock go and ends the session. The unlock is explicit: a
// closed connection's backend lets its locks go only once it has exited,
// a moment later, and an instance waiting to take over should not wait for
// that (it does when the session died, which unlocks as it ends).
func (r *relaySession) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = r.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", relayLockKey)
	_ = r.conn.Close(ctx)
}

// unsentEventsSQL reads the oldest rows through the primary key (every row
// waits: a confirmed one is deleted). There is no high-water mark: seq is taken at INSERT, and a
// transaction that took a lower seq may commit after one that took a
// higher; reading from the lowest unsent row each time picks it up then.
const unsentEventsSQL = `
SELECT seq, event_ids::text[], routing_keys, body FROM (
    SELECT seq, event_ids, routing_keys, body, sum(cardinality(event_ids)) OVER (ORDER BY seq) AS upto
    FROM outbox ORDER BY seq LIMIT $1) o
WHERE upto - cardinality(event_ids) < $1
ORDER BY seq`

// UnsentEvents returns up to limit events not yet confirmed by the broker,
// in seq order.
func (r *relaySession) UnsentEvents(ctx context.Context, limit int) ([]events.Row, error) {
	// A row holds a transaction's events (a group commit's: tens); rows are
	// read whole, until they hold limit events (the last may pass it).
	rows, err := r.conn.Query(ctx, unsentEventsSQL, limit)
	if err != nil {
		return nil, wrap("read unsent events", err)
	}
	defer rows.Close()
	var (
		out  []events.Row
		seq  int64
		ids  []string
		keys []string
		body []byte
	)
	for rows.Next() {
		if err := rows.Scan(&seq, &ids, &keys, &body); err != nil {
			return nil, wrap("read unsent events", err)
		}
		// body is the scan's own copy: the events' bodies are slices of it.
		lines := bytes.Split(body, []byte{'\n'})
		if len(ids) != len(keys) || len(ids) != len(lines) {
			return nil, fmt.Errorf("outbox row %d holds %d ids, %d routing keys and %d bodies", seq, len(ids), len(keys), len(lines))
		}
		for i := range ids {
			out = append(out, events.Row{Seq: seq, EventID: ids[i], RoutingKey: keys[i], Body: lines[i]})
		}
		body = nil
	}
	return out, wrap("read unsent events", rows.Err())
}

// A row whose events were all confirmed is deleted rather than marked: an
// UPDATE would write the row again (and its index), a DELETE only marks it
// dead.
const markEventsSentSQL = `DELETE FROM outbox WHERE seq = ANY($1)`

// MarkEventsSent records that the broker confirmed every event of the rows
// seqs: they leave the outbox.
func (r *relaySession) MarkEventsSent(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, err := r.conn.Exec(ctx, markEventsSentSQL, seqs)
	return wrap("mark events sent", err)
}

// outboxDepthSQL counts the waiting events: cheap while the relay keeps up,
// proportional to the backlog while the broker is away.
const outboxDepthSQL = `
SELECT coalesce(sum(cardinality(event_ids)), 0), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM outbox`

// OutboxDepth says how many events wait to be sent and how long the oldest
// of them has waited (zero when none).
func (s *Store) OutboxDepth(ctx context.Context) (unsent int64, oldest time.Duration, err error) {
	var seconds float64
	if err := s.pool.QueryRow(ctx, outboxDepthSQL).Scan(&unsent, &seconds); err != nil {
		return 0, 0, wrap("read outbox depth", err)
	}
	return unsent, time.Duration(max(seconds, 0) * float64(time.Second)), nil
}
