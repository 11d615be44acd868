package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
)

// WriteEvents makes every stored or reversed claim write its event to the
// outbox, in the same transaction (EVENTS_EXCHANGE set). Call it before use.
func (s *Store) WriteEvents(on bool) { s.events.Store(on) }

const insertEventsSQL = `INSERT INTO outbox (event_ids, routing_keys, body) VALUES ($1, $2, $3)`

// insertEvents writes the transaction's events to the outbox as one row (see
// outboxRow).
func insertEvents(ctx context.Context, tx pgx.Tx, evs []events.Row) error {
	if len(evs) == 0 {
		return nil
	}
	ids, keys, body, err := outboxRow(evs)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, insertEventsSQL, ids, keys, body)
	return wrap("write events", err)
}

// outboxRow is the outbox row of a transaction's events, in order: a row
// costs a heap tuple, an index entry, a read and a delete whatever it
// holds. Their bodies are one value, a line each.
func outboxRow(evs []events.Row) (ids [][16]byte, keys []string, body []byte, err error) {
	ids, keys = make([][16]byte, len(evs)), make([]string, len(evs))
	size := 0
	for _, e := range evs {
		size += len(e.Body) + 1
	}
	body = make([]byte, 0, size)
	for i, e := range evs {
		id, err := uuid.Parse(e.EventID)
		if err != nil || bytes.IndexByte(e.Body, '\n') >= 0 {
			return nil, nil, nil, fmt.Errorf("write events: event %q is not a UUID and a line of JSON", e.EventID)
		}
		ids[i], keys[i] = id, e.RoutingKey
		if i > 0 {
			body = append(body, '\n')
		}
		body = append(body, e.Body...)
	}
	return ids, keys, body, nil
}

// findClaimSQL locks a claim of a client, named by its id or its external
// id, for a reversal.
// $4 is a claim that does not count: a correction never replaces itself.
const findClaimSQL = `
SELECT id FROM claims
WHERE client_scope = $1 AND (id = $2 OR external_id = $3) AND id <> $4
ORDER BY id = $2 DESC
LIMIT 1
FOR UPDATE`

// ReverseClaim reverses a claim of the client scope, named by its id or its
// external id, in one transaction: its status becomes reversed (the claim
// and its lines are kept), each line's net fee leaves its provider's total,
// and its event goes to the outbox. It returns the claim as it now stands
// and the totals it changed, for Redis. Reversing a reversed claim changes
// nothing and returns it as it stands, with no totals.
// claim.ErrNotFound when the client has no such claim.
func (s *Store) ReverseClaim(ctx context.Context, scope, ref, reason, detail string) (claim.Claim, []claim.ProviderTotal, error) {
	var (
		c      claim.Claim
		totals []claim.ProviderTotal
	)
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var err error
		c, totals, err = reverseIn(ctx, tx, scope, ref, claim.Reversal{At: now(), Reason: reason, Detail: detail}, s.events.Load())
		return err
	})
	if err != nil {
		return claim.Claim{}, nil, err
	}
	return c, totals, nil
}

// now is the time a reversal records, at Postgres's precision, so that the
// answer, the event and a later read agree.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// reverseIn reverses the claim ref of scope in tx (see ReverseClaim).
func reverseIn(ctx context.Context, tx pgx.Tx, scope, ref string, r claim.Reversal, writeEvent bool) (claim.Claim, []claim.ProviderTotal, error) {
	c, done, err := markReversed(ctx, tx, scope, ref, uuid.Nil, r)
	if err != nil || !done { // not found, or reversed before
		return c, nil, err
	}
	change, boards := deltas{}, boardDeltas{}
	change.add(c, -1)
	boards.add(c, -1)
	var evs []events.Row
	if writeEvent {
		evs = []events.Row{events.Reversed(c)}
	}
	totals, err := changeTotals(ctx, tx, change, boards, evs)
	var over *totalsOverflow
	if errors.As(err, &over) {
		// As for a claim that would pass the bound: refused, nothing changed.
		return claim.Claim{}, nil, claim.Problems{{Line: -1, Field: string(claim.FieldProviderNPI),
			Rule: claim.RuleProviderTotal, Detail: "reversing this claim would take a provider's total past the bound"}}
	}
	if err != nil {
		return claim.Claim{}, nil, err
	}
	return c, totals, nil
}

// markReversed finds the claim ref of scope (other than self), locks it and,
// unless it is reversed already, records r against it. It returns the claim
// as it now stands, and whether this call reversed it.
func markReversed(ctx context.Context, tx pgx.Tx, scope, ref string, self uuid.UUID, r claim.Reversal) (claim.Claim, bool, error) {
	if !claim.StorableText(ref) { // Postgres would refuse it; it names no claim
		return claim.Claim{}, false, claim.ErrNotFound
	}
	uid, _ := uuid.Parse(ref) // the nil uuid matches no claim
	var id uuid.UUID
	err := tx.QueryRow(ctx, findClaimSQL, scope, uid, ref, self).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return claim.Claim{}, false, claim.ErrNotFound
	}
	if err != nil {
		return claim.Claim{}, false, wrap("find claim", err)
	}
	c, err := readClaim(ctx, tx, scope, id)
	if err != nil || c.Reversal != nil {
		return c, false, err
	}
	_, err = tx.Exec(ctx, `UPDATE claims SET status = 'reversed', reversed_at = $2, reversal_reason = $3,
		reversal_detail = NULLIF($4, ''), replaced_by = NULLIF($5, '')::uuid WHERE id = $1`,
		id, r.At, r.Reason, r.Detail, r.ReplacedBy)
	if err != nil {
		return claim.Claim{}, false, wrap("reverse claim", err)
	}
	c.Reversal = &r
	return c, true, nil
}

// refusals are the claims of a batch that cannot be stored, by index, found
// by an attempt that must be rolled back: the batch is tried again without
// them.
type refusals map[int]error

func (r refusals) Error() string { return fmt.Sprintf("%d claims of the batch refused", len(r)) }

// reverseReplaced reverses, in tx, the claims the batch's inserted
// corrections replace, and records on each correction which claim it
// replaced. A correction whose claim is none of its sender's, or is
// reversed already, fails the attempt with refusals. It returns what the
// reversals take from each provider's total, and the reversed claims.
func reverseReplaced(ctx context.Context, tx pgx.Tx, pending []claim.Pending, inserted []int, stored []claim.Stored) (deltas, []claim.Claim, error) {
	var (
		change   deltas
		reversed []claim.Claim
		refused  = refusals{}
	)
	at := now()
	for _, i := range inserted {
		c := pending[i].Claim
		if c.Replaces == "" {
			continue
		}
		self, err := uuid.Parse(c.ID)
		if err != nil {
			return nil, nil, wrap("replace claim", err)
		}
		r := claim.Reversal{At: at, Reason: claim.ReasonReplaced, ReplacedBy: c.ID}
		old, done, err := markReversed(ctx, tx, c.Sender, c.Replaces, self, r)
		switch {
		case errors.Is(err, claim.ErrNotFound):
			refused[i] = claim.Problems{{Line: -1, Field: "replaces", Rule: "replaces",
				Detail: "names no claim of yours: give the id or claim_id of a claim you sent"}}
			continue
		case err != nil:
			return nil, nil, err
		case !done:
			refused[i] = &claim.AlreadyReplaced{ID: old.ID, ReplacedBy: old.Reversal.ReplacedBy, Reason: old.Reversal.Reason}
			continue
		}
		if _, err := tx.Exec(ctx, `UPDATE claims SET replaces = $2 WHERE id = $1`, self, old.ID); err != nil {
			return nil, nil, wrap("replace claim", err)
		}
		if change == nil {
			change = deltas{}
		}
		change.add(old, -1)
		stored[i].Replaced = old.ID
		reversed = append(reversed, old)
	}
	if len(refused) > 0 {
		return nil, nil, refused
	}
	return change, reversed, nil
}
