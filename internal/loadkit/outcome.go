package loadkit

import "net/http"

// Outcome is what a client knows about a claim it sent.
type Outcome int

const (
	Unknown Outcome = iota // no final answer (no answer, 409, 429, 5xx): may or may not be stored
	Acked                  // 201 or 200, or 202 (async mode: queued): must be stored exactly once, as sent
	Refused                // a final 4xx: must not be stored
)

func (o Outcome) String() string { return [...]string{"unknown", "acknowledged", "refused"}[o] }

// OutcomeOf is what one answer's status says of the claim it answered; 0
// stands for no answer at all.
func OutcomeOf(status int) Outcome {
	switch {
	case status == http.StatusOK || status == http.StatusCreated || status == http.StatusAccepted:
		return Acked
	case status == 0, status == http.StatusConflict, status == http.StatusTooManyRequests, status >= 500:
		return Unknown
	default:
		return Refused
	}
}
