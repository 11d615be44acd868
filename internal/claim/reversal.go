package claim

import (
	"errors"
	"time"
)

// StatusReversed is a stored claim taken back: voided (its payment failed,
// or it was sent in error) or replaced by a correction. It and its lines are
// kept; its net fees no longer count in any total.
const StatusReversed = "reversed"

// The reasons a claim is reversed. ReasonReplaced is given by the service to
// a claim a correction replaced; the others by the caller of the reversal.
const (
	ReasonPaymentFailed = "payment_failed"
	ReasonSentInError   = "sent_in_error"
	ReasonOther         = "other"
	ReasonReplaced      = "replaced"
)

// MaxReversalDetail bounds a reversal's free-text detail, in bytes.
const MaxReversalDetail = 1000

// Reversal says when and why a claim was reversed.
type Reversal struct {
	At         time.Time
	Reason     string
	Detail     string // the caller's words; "" when none
	ReplacedBy string // the id of the claim that replaced it (ReasonReplaced)
}

// ValidReversalReason says whether a caller may give reason.
func ValidReversalReason(reason string) bool {
	switch reason {
	case ReasonPaymentFailed, ReasonSentInError, ReasonOther:
		return true
	}
	return false
}

// Errors of a reversal or a correction (beside ErrNotFound).
var (
	// ErrStillQueued: the claim was accepted for the queue and is not stored
	// yet (async mode); it can be reversed once it is.
	ErrStillQueued = errors.New("the claim is queued and not stored yet")
)

// AlreadyReplaced refuses a correction of a claim that is reversed already:
// voided (ReplacedBy "") or replaced by the claim ReplacedBy.
type AlreadyReplaced struct {
	ID         string // the claim the correction named
	ReplacedBy string
	Reason     string
}

func (e *AlreadyReplaced) Error() string {
	if e.ReplacedBy != "" {
		return "claim " + e.ID + " was already replaced by claim " + e.ReplacedBy
	}
	return "claim " + e.ID + " was already reversed (" + e.Reason + ")"
}
