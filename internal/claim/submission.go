package claim

import "time"

// Submission is one claim sent to be stored: what the HTTP layer hands the
// pipeline, and what a queued message turns back into.
type Submission struct {
	Input Input
	// Client scopes the claim's claim_id and idempotency key: those of
	// different clients never meet.
	Client string
	// IdempotencyKey, when not empty, makes a retry of this submission return
	// the first one's outcome instead of storing the claim again.
	IdempotencyKey string
	// ID and ReceivedAt are set for a claim accepted earlier and queued (the
	// async path): it is stored under the id its sender was given. When ID
	// is empty the claim gets a new id, received now.
	ID         string
	ReceivedAt time.Time
}

// Result is what became of a submission that did not fail.
type Result struct {
	Claim Claim
	// Created is true when this submission (or the one it replays) stored the
	// claim; false when the claim's claim_id was already stored.
	Created bool
	// Replayed is true when an earlier submission with the same idempotency
	// key produced this outcome.
	Replayed bool
}
