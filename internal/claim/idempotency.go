package claim

import (
	"time"

	"github.com/google/uuid"
)

// KeyRequest asks for an idempotency key.
type KeyRequest struct {
	Scope, Key  string
	RequestHash []byte        // of the normalized claim: the same key must carry the same claim
	Lease       time.Duration // how long the key is held before a crashed holder loses it
	TTL         time.Duration // how long the key is remembered
	// Token, when set, names the lease (else a random one): a request asking
	// again with the same token takes its own lease over at once instead of
	// waiting for it to end. A queued claim uses its id, so a delivery after
	// a worker crashed mid-claim is not held up by the dead worker's lease.
	Token uuid.UUID
}

// KeyLease is an idempotency key held by one request until its claim commits.
type KeyLease struct {
	Scope, Key string
	Token      uuid.UUID
}

// KeyOutcome is the stored outcome of an earlier request with the same key.
type KeyOutcome struct {
	ClaimID string
	Created bool // the earlier request stored the claim (rather than finding it stored)
}
