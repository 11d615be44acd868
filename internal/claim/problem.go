package claim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors the layers below return and the HTTP layer maps to a status.
var (
	// ErrNotFound means the claim asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable means the store cannot be reached now; a retry may succeed.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrBusy means the service has as many claims waiting to be stored as
	// it holds; a retry a moment later may succeed. It comes as a RetryAfter.
	ErrBusy = errors.New("too many claims waiting to be stored")
	// ErrKeyInFlight means another request with the same idempotency key is
	// still being processed.
	ErrKeyInFlight = errors.New("a request with this idempotency key is in progress")
	// ErrKeyInFlight errors may come as a RetryAfter naming when to retry.

	// ErrClaimIDReused means a claim_id was sent again with another claim.
	ErrClaimIDReused = errors.New("this claim_id was used for a different claim")
	// ErrKeyReused means an idempotency key was sent again with a different claim.
	ErrKeyReused = errors.New("this idempotency key was used for a different claim")
	// ErrTooManyKeys means the client holds as many idempotency keys as it
	// may; it comes as a RetryAfter.
	ErrTooManyKeys = errors.New("this client holds the most idempotency keys allowed")
	// ErrTooManyQueued means the client has as many claims queued and not
	// stored (or refused) as it may; it comes as a RetryAfter.
	ErrTooManyQueued = errors.New("this client has the most queued claims allowed")
)

// Problem is one thing wrong with a claim, precise enough for the sender to
// fix it: which line (its index in the input, from 0), which field, which rule.
// Details never repeat a subscriber number.
type Problem struct {
	Line   int    // index of the line in the input; -1 for the claim as a whole
	Field  string // canonical field name, or the name as sent for an unknown field
	Rule   string // the rule that failed: "required", "money", "npi_format", ...
	Detail string
}

// Names of the checks done while parsing; validation rules add their own.
const (
	RuleUnknownField   = "unknown_field"
	RuleDuplicateField = "duplicate_field"
	RuleRequired       = "required"
	RuleMoney          = "money"
	RuleDate           = "date"
	RuleValueType      = "value_type"
	RuleText           = "text"
	RuleLength         = "length"
	RuleProviderTotal  = "provider_total"
	RuleLineCount      = "line_count"
	RuleExternalID     = "claim_id"
)

// Problems is every problem found in one claim. As an error it means the claim
// was well-formed but invalid, and nothing of it was stored.
type Problems []Problem

func (ps Problems) Error() string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		if p.Line < 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", p.Field, p.Detail))
			continue
		}
		parts = append(parts, fmt.Sprintf("line %d %s: %s", p.Line, p.Field, p.Detail))
	}
	return "invalid claim: " + strings.Join(parts, "; ")
}

// RetryAfter is an error that says when trying again may succeed.
type RetryAfter struct {
	Err   error
	After time.Duration
}

func (e *RetryAfter) Error() string { return e.Err.Error() }
func (e *RetryAfter) Unwrap() error { return e.Err }
