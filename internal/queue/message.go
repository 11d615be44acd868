package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/claim-process/claim-process/internal/claim"
)

// A message is one accepted claim. Its body is the claim as JSON in the
// API's own input form, normalized (ISO dates, amounts as "123.45"), so an
// operator can read a dead letter, fix it and replay it like any claim. The
// id the sender was given is the message id; what is not part of the claim
// travels in headers.
const (
	headerReceivedAt     = "claimd-received-at" // RFC 3339 with nanoseconds
	headerClient         = "claimd-client"      // the API client the claim_id is scoped to ("" without API keys)
	headerIdempotencyKey = "claimd-idempotency-key"
)

type messageBody struct {
	ClaimID  string        `json:"claim_id,omitempty"`
	Replaces string        `json:"replaces,omitempty"` // a correction: the claim it replaces, as the sender named it
	Lines    []messageLine `json:"lines"`
}

type messageLine struct {
	ServiceDate        string `json:"service_date"`
	SubmittedProcedure string `json:"submitted_procedure"`
	Quadrant           string `json:"quadrant,omitempty"`
	PlanGroup          string `json:"plan_group"`
	Subscriber         string `json:"subscriber"`
	ProviderNPI        string `json:"provider_npi"`
	ProviderFees       string `json:"provider_fees"`
	AllowedFees        string `json:"allowed_fees"`
	MemberCoinsurance  string `json:"member_coinsurance"`
	MemberCopay        string `json:"member_copay"`
}

// encodeClaim is the message body of c.
func encodeClaim(c claim.Claim) ([]byte, error) {
	body := messageBody{ClaimID: c.ExternalID, Replaces: c.Replaces, Lines: make([]messageLine, len(c.Lines))}
	for i, l := range c.Lines {
		body.Lines[i] = messageLine{
			ServiceDate:        l.ServiceDate.Format(time.DateOnly),
			SubmittedProcedure: l.SubmittedProcedure,
			Quadrant:           l.Quadrant,
			PlanGroup:          l.PlanGroup,
			Subscriber:         l.Subscriber,
			ProviderNPI:        l.ProviderNPI,
			ProviderFees:       l.ProviderFees.String(),
			AllowedFees:        l.AllowedFees.String(),
			MemberCoinsurance:  l.MemberCoinsurance.String(),
			MemberCopay:        l.MemberCopay.String(),
		}
	}
	return json.Marshal(body)
}

// newMessage is the persistent message carrying c.
func newMessage(c claim.Claim, idempotencyKey string) (amqp.Publishing, error) {
	body, err := encodeClaim(c)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encode claim %s: %w", c.ID, err)
	}
	headers := amqp.Table{headerReceivedAt: c.ReceivedAt.UTC().Format(time.RFC3339Nano)}
	if c.Sender != "" {
		headers[headerClient] = c.Sender
	}
	if idempotencyKey != "" {
		headers[headerIdempotencyKey] = idempotencyKey
	}
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    c.ID,
		Timestamp:    c.ReceivedAt,
		Type:         "claim",
		Headers:      headers,
		Body:         body,
	}, nil
}

// errUndecodable marks a message that is not a claim: no delivery can store it.
var errUndecodable = errors.New("undecodable message")

// decodeMessage turns a delivered message back into the request the API
// accepted. The claim in it is parsed and validated again by the pipeline.
func decodeMessage(d amqp.Delivery) (claim.Submission, error) {
	if _, err := uuid.Parse(d.MessageId); err != nil {
		return claim.Submission{}, fmt.Errorf("%w: the message id %q is not a claim id", errUndecodable, d.MessageId)
	}
	text, _ := d.Headers[headerReceivedAt].(string)
	receivedAt, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return claim.Submission{}, fmt.Errorf("%w: header %s: %v", errUndecodable, headerReceivedAt, err)
	}
	in, err := claim.DecodeJSONBytes(d.Body)
	if err != nil {
		return claim.Submission{}, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	client, _ := d.Headers[headerClient].(string)
	key, _ := d.Headers[headerIdempotencyKey].(string)
	return claim.Submission{Input: in, Client: client, IdempotencyKey: key, ID: d.MessageId, ReceivedAt: receivedAt}, nil
}
