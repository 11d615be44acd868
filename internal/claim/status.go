package claim

import "time"

// The states of an accepted claim.
const (
	StatusStored       = "stored"        // stored in Postgres
	StatusQueued       = "queued"        // accepted for the queue, waiting for a worker
	StatusDeadLettered = "dead_lettered" // accepted for the queue, refused by the workers
)

// Status is what is known of an accepted claim: the stored claim itself, or,
// for a claim accepted for the queue and not stored (yet), where it stands.
type Status struct {
	// State is StatusStored (then Claim is the claim), StatusQueued or
	// StatusDeadLettered.
	State string
	Claim Claim
	// For a claim not stored: what was accepted, and why the workers refused
	// it (dead-lettered).
	ID, ClaimID string
	NetFee      Cents
	ReceivedAt  time.Time
	Reason      string
}

// Source says where a ranking answer came from.
type Source string

// The sources of a ranking answer: the Redis sorted set, or Postgres when
// Redis could not answer.
const (
	SourceRedis    Source = "redis"
	SourcePostgres Source = "postgres"
)
