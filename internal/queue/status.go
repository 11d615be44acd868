package queue

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/claim"
)

// Status remembers, in Redis, the claims accepted for the queue that no
// worker has stored yet, so GET /claims/{id} can tell "queued" from "never
// accepted". Once a claim is stored Postgres answers for it and its entry is
// deleted; an entry stays (until its TTL) only for a claim that was not
// stored under its own id: stored before under the same claim_id or
// idempotency key, or refused and dead-lettered.
//
// The entry is written before the claim is published and a claim whose entry
// cannot be written is not accepted: a 202 is never followed by a 404.
//
// Each entry belongs to the client that sent the claim: another client is
// told nothing of it.
type Status struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewStatus keeps entries under prefix for ttl (default 7 days: longer than
// any backlog the queue should hold).
func NewStatus(rdb redis.UniversalClient, prefix string, ttl time.Duration) *Status {
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	return &Status{rdb: rdb, prefix: prefix + "queued:", ttl: ttl}
}

// State is what is known of an accepted claim not stored under its own id.
type State struct {
	// Status is "queued" (waiting for a worker), "stored" (stored under
	// StoredAs, an earlier claim with the same claim_id or idempotency key)
	// or "dead_lettered" (refused by the workers; see Reason).
	Status     string      `json:"status"`
	Client     string      `json:"client,omitempty"`   // the client that sent it ("" without API keys)
	ClaimID    string      `json:"claim_id,omitempty"` // the sender's own id, when it gave one
	NetFee     claim.Cents `json:"net_fee_cents"`
	ReceivedAt time.Time   `json:"received_at"`
	StoredAs   string      `json:"stored_as,omitempty"`
	Reason     string      `json:"reason,omitempty"`
}

// The values of State.Status.
const (
	StatusQueued       = "queued"
	StatusStored       = "stored"
	StatusDeadLettered = "dead_lettered"
)

func (s *Status) key(id string) string { return s.prefix + id }

func (s *Status) set(ctx context.Context, id string, st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.rdb.Set(ctx, s.key(id), b, s.ttl).Err()
}

// MarkQueued records c as accepted and waiting.
func (s *Status) MarkQueued(ctx context.Context, c claim.Claim) error {
	return s.set(ctx, c.ID, State{Status: StatusQueued, Client: c.Sender, ClaimID: c.ExternalID,
		NetFee: c.NetFee(), ReceivedAt: c.ReceivedAt})
}

// Lookup returns the state of the accepted claim id if client sent it;
// found is false when there is no entry (never accepted, or stored under
// its own id) or another client sent the claim.
func (s *Status) Lookup(ctx context.Context, client, id string) (st State, found bool, err error) {
	st, found, err = s.get(ctx, id)
	if err != nil || !found || st.Client != client {
		return State{}, false, err
	}
	return st, true, nil
}

func (s *Status) get(ctx context.Context, id string) (st State, found bool, err error) {
	b, err := s.rdb.Get(ctx, s.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, false, err
	}
	return st, true, nil
}

// Forget deletes the entries of ids (best effort: they expire anyway).
func (s *Status) Forget(ids ...string) {
	if len(ids) == 0 {
		return
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.key(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.rdb.Del(ctx, keys...).Err()
}

// update replaces the entry of id, keeping what it knew.
func (s *Status) update(id string, change func(*State)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, _, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	change(&st)
	return s.set(ctx, id, st)
}
