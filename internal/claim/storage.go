package claim

// Pending is a claim to store, with the idempotency key lease its request
// holds, if any.
type Pending struct {
	Claim Claim
	Lease *KeyLease
}

// Stored is what became of one claim of a batch.
type Stored struct {
	// ExistingID is set when a claim with the same external id was already
	// stored (perhaps earlier in the same batch), or this very claim was (its
	// id is stored: a queued claim delivered again): then nothing of this
	// claim was written and this is the stored claim's id.
	ExistingID string
	// Err says why this claim was refused, with nothing of it written and the
	// rest of the batch unaffected: ErrClaimIDReused when its external id is
	// stored with other content, ErrKeyInFlight when its lease was lost to
	// another request; for a correction, Problems when it names no claim of
	// its sender, *AlreadyReplaced when that claim is reversed already.
	Err error
	// Replaced is the id of the claim this correction reversed; "" for a
	// new claim.
	Replaced string
}

// StoredBatch is what storing a batch of pending claims did.
type StoredBatch struct {
	// Claims has one entry per pending claim, in order.
	Claims []Stored
	// Totals are the new totals, as committed, of every provider the batch
	// changed, with their new versions, in the all-time board; Boards are
	// those of the other boards it changed (Board set).
	Totals, Boards []ProviderTotal
}
