package queue

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
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
// cannot be written is not accepted: in async mode a 202 is never followed by
// a 404 (see StatusReader for sync mode).
//
// Each entry belongs to the client that sent the claim: another client is
// told nothing of it. Redis evicts nothing here, so a client holds at most
// PerClient entries at once: each client's entries are also listed in a
// sorted set scored by their expiry, which says how many it holds.
type Status struct {
	rdb       redis.UniversalClient
	keys      StatusKeys
	ttl       time.Duration
	perClient int64
}

// StatusConfig tunes a Status. Zero values take the defaults.
type StatusConfig struct {
	// TTL is how long an entry is kept. Default DefaultStatusTTL: longer than any
	// backlog the queue should hold.
	TTL time.Duration
	// PerClient caps the entries of one client; past it the client's claims
	// are refused with claim.ErrTooManyQueued. Default DefaultQueuedPerClient.
	PerClient int64
}

// DefaultQueuedPerClient is StatusConfig.PerClient's default: a backlog of a
// million claims of one client (about 300 MB of Redis).
const DefaultQueuedPerClient = 1_000_000

// StatusKeys names the Redis keys of the statuses; rank.Keys does.
type StatusKeys interface {
	Queued(id string) string       // the entry of one claim
	QueuedBy(client string) string // the sorted set of a client's entries
}

// NewStatus keeps entries under keys.
func NewStatus(rdb redis.UniversalClient, keys StatusKeys, cfg StatusConfig) *Status {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultStatusTTL
	}
	if cfg.PerClient <= 0 {
		cfg.PerClient = DefaultQueuedPerClient
	}
	return &Status{rdb: rdb, keys: keys, ttl: cfg.TTL, perClient: cfg.PerClient}
}

// State is what is known of an accepted claim not stored under its own id.
type State struct {
	// Status is claim.StatusQueued (waiting for a worker),
	// claim.StatusStored (stored under StoredAs, an earlier claim with the
	// same claim_id or idempotency key) or claim.StatusDeadLettered (refused
	// by the workers; see Reason).
	Status     string      `json:"status"`
	Client     string      `json:"client,omitempty"`   // the client that sent it ("" without API keys)
	ClaimID    string      `json:"claim_id,omitempty"` // the sender's own id, when it gave one
	NetFee     claim.Cents `json:"net_fee_cents"`
	ReceivedAt time.Time   `json:"received_at"`
	StoredAs   string      `json:"stored_as,omitempty"`
	Reason     string      `json:"reason,omitempty"`
}

func (s *Status) set(ctx context.Context, id string, st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.rdb.Set(ctx, s.keys.Queued(id), b, s.ttl).Err()
}

// MarkQueued records c as accepted and waiting. It fails with
// claim.ErrTooManyQueued when c's sender already holds PerClient entries.
func (s *Status) MarkQueued(ctx context.Context, c claim.Claim) error {
	b, err := json.Marshal(State{Status: claim.StatusQueued, Client: c.Sender, ClaimID: c.ExternalID,
		NetFee: c.NetFee(), ReceivedAt: c.ReceivedAt})
	if err != nil {
		return err
	}
	// One round trip: the entry is written, then counted with the client's
	// others; over the cap it is taken back.
	now := time.Now()
	index := s.keys.QueuedBy(c.Sender)
	var held *redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, index, "-inf", strconv.FormatInt(now.UnixMilli(), 10)) // the expired
		p.ZAdd(ctx, index, redis.Z{Score: float64(now.Add(s.ttl).UnixMilli()), Member: c.ID})
		held = p.ZCard(ctx, index)
		p.PExpire(ctx, index, s.ttl)
		p.Set(ctx, s.keys.Queued(c.ID), b, s.ttl)
		return nil
	})
	if err != nil {
		return err
	}
	if held.Val() > s.perClient {
		s.Forget(c.Sender, c.ID)
		return &claim.RetryAfter{Err: claim.ErrTooManyQueued, After: time.Minute}
	}
	return nil
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
	b, err := s.rdb.Get(ctx, s.keys.Queued(id)).Bytes()
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

// Forget deletes the entries of client's claims ids (best effort: they
// expire anyway).
func (s *Status) Forget(client string, ids ...string) {
	if len(ids) == 0 {
		return
	}
	keys := make([]string, len(ids))
	members := make([]any, len(ids))
	for i, id := range ids {
		keys[i], members[i] = s.keys.Queued(id), id
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys { // one by one: on a cluster they live in different slots
			p.Del(ctx, k)
		}
		p.ZRem(ctx, s.keys.QueuedBy(client), members...)
		return nil
	})
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
