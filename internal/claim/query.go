package claim

import "time"

// Query finds a client's stored claims (GET /claims): by the sender's own
// id, or by a provider and a span of service dates, newest first.
type Query struct {
	// ExternalID, when set, finds the claim the client sent under that
	// claim_id; the other fields are then unused.
	ExternalID string
	// ProviderNPI finds the claims with a line of that provider whose
	// service date is within From and To (both included; a zero time is
	// no bound).
	ProviderNPI string
	From, To    time.Time
	// Before, when set, is a claim id: only claims sent before it (ids are
	// UUIDv7, ordered as received) are listed, the keyset of the next page.
	Before string
	// Limit is how many claims at most.
	Limit int
}

// MaxQueryLimit bounds Query.Limit; DefaultQueryLimit is its default.
const (
	DefaultQueryLimit = 20
	MaxQueryLimit     = 100
)

// ValidNPIFormat says whether npi is ten digits.
func ValidNPIFormat(npi string) bool { return len(npi) == 10 && allDigits(npi) }
