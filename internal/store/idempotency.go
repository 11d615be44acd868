package store

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

// A new key, or one whose holder died before its claim committed, is leased
// to this request. Committed keys and live leases are left alone.
const acquireKeySQL = `
INSERT INTO idempotency_keys AS k (scope, key, request_hash, lease_token, lease_until, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(secs => $6))
ON CONFLICT (scope, key) DO UPDATE
SET request_hash = excluded.request_hash, lease_token = excluded.lease_token,
    lease_until = excluded.lease_until, expires_at = excluded.expires_at, created_at = now()
WHERE k.claim_id IS NULL AND (k.lease_until < now() OR k.lease_token = excluded.lease_token)`

const keySQL = `
SELECT request_hash, claim_id, coalesce(created, false),
       greatest(0, extract(epoch FROM lease_until - now()))::float8
FROM idempotency_keys WHERE scope = $1 AND key = $2`

// AcquireKey leases an idempotency key to this request, in a transaction of
// its own so that a concurrent retry sees the key is taken. When the key
// already carries a committed claim it returns that outcome and no lease.
// Errors: claim.ErrKeyReused when the key was used for another claim,
// claim.ErrKeyInFlight while another request holds it.
func (s *Store) AcquireKey(ctx context.Context, r claim.KeyRequest) (*claim.KeyLease, *claim.KeyOutcome, error) {
	lease, outcome, err := s.acquireKey(ctx, r)
	if errors.Is(err, errKeyVanished) { // expired between our two statements: it is free now
		lease, outcome, err = s.acquireKey(ctx, r)
	}
	if errors.Is(err, errKeyVanished) {
		err = &claim.RetryAfter{Err: claim.ErrKeyInFlight, After: time.Second}
	}
	return lease, outcome, err
}

var errKeyVanished = errors.New("idempotency key vanished")

func (s *Store) acquireKey(ctx context.Context, r claim.KeyRequest) (*claim.KeyLease, *claim.KeyOutcome, error) {
	lease := &claim.KeyLease{Scope: r.Scope, Key: r.Key, Token: r.Token}
	if lease.Token == uuid.Nil {
		lease.Token = uuid.New()
	}
	tag, err := s.pool.Exec(ctx, acquireKeySQL, r.Scope, r.Key, r.RequestHash, lease.Token,
		r.Lease.Seconds(), r.TTL.Seconds())
	if err != nil {
		return nil, nil, wrap("acquire idempotency key", err)
	}
	if tag.RowsAffected() == 1 {
		return lease, nil, nil
	}
	var (
		hash      []byte
		claimID   *uuid.UUID
		created   bool
		leaseLeft *float64
	)
	err = s.pool.QueryRow(ctx, keySQL, r.Scope, r.Key).Scan(&hash, &claimID, &created, &leaseLeft)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil, errKeyVanished
	case err != nil:
		return nil, nil, wrap("read idempotency key", err)
	case !bytes.Equal(hash, r.RequestHash):
		return nil, nil, claim.ErrKeyReused
	case claimID == nil:
		// Held: by a live request, or by one that died, until its lease ends.
		after := time.Second
		if leaseLeft != nil {
			after = max(after, time.Duration(*leaseLeft*float64(time.Second)))
		}
		return nil, nil, &claim.RetryAfter{Err: claim.ErrKeyInFlight, After: after}
	}
	return nil, &claim.KeyOutcome{ClaimID: claimID.String(), Created: created}, nil
}

const releaseKeySQL = `
DELETE FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND lease_token = $3 AND claim_id IS NULL`

// ReleaseKey gives up a lease whose claim did not commit, so a retry can
// proceed at once instead of waiting for the lease to expire.
func (s *Store) ReleaseKey(ctx context.Context, lease *claim.KeyLease) error {
	_, err := s.pool.Exec(ctx, releaseKeySQL, lease.Scope, lease.Key, lease.Token)
	return wrap("release idempotency key", err)
}

const expireKeysSQL = `
DELETE FROM idempotency_keys
WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT 5000)`

// ExpireKeys forgets idempotency keys past their expiry and returns how many.
func (s *Store) ExpireKeys(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, expireKeysSQL)
		if err != nil {
			return total, wrap("expire idempotency keys", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// Counts one client's keys, stopping at $2: the cost is bounded by the cap
// it is checked against, not by the size of the table.
const countKeysSQL = `
SELECT count(*) FROM (SELECT 1 FROM idempotency_keys WHERE scope = $1 LIMIT $2) k`

// CountKeys says how many idempotency keys the client scope holds, counting
// no further than upTo.
func (s *Store) CountKeys(ctx context.Context, scope string, upTo int64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, countKeysSQL, scope, upTo).Scan(&n)
	return n, wrap("count idempotency keys", err)
}
