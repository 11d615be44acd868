// Package events is claimd's side of the hand-off to payments: the events a
// stored or reversed claim writes to the outbox, in the transaction that
// stores or reverses it (the contract: schema/*.json, docs/events.md), and
// the relay that publishes them to RabbitMQ.
package events

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/claim-process/claim-process/internal/claim"
)

// The event types, which are also their routing keys.
const (
	TypeStored   = "claim.stored"
	TypeReversed = "claim.reversed"
)

// Row is one event as the outbox holds it.
type Row struct {
	Seq        int64 // its place in the outbox; 0 until written
	EventID    string
	RoutingKey string
	Body       []byte // the event's JSON
}

// event is the body of every event. No subscriber number, nor anything of
// a line but its provider and net fee, is ever in it.
type event struct {
	EventID    string          `json:"event_id"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	ID         string          `json:"id"`
	ClaimID    string          `json:"claim_id,omitempty"`
	Status     string          `json:"status"`
	NetFee     json.RawMessage `json:"net_fee"`
	NetFeeCent int64           `json:"net_fee_cents"`
	ReceivedAt time.Time       `json:"received_at"`
	Providers  []providerFee   `json:"providers"`
	Replaces   string          `json:"replaces,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Detail     string          `json:"detail,omitempty"`
	ReplacedBy string          `json:"replaced_by,omitempty"`
}

// providerFee is what a claim adds to one provider's total (a reversal
// takes it away again).
type providerFee struct {
	ProviderNPI string          `json:"provider_npi"`
	NetFee      json.RawMessage `json:"net_fee"`
	NetFeeCents int64           `json:"net_fee_cents"`
}

// Stored is the event of c stored, at when it was committed.
func Stored(c claim.Claim) Row {
	return newRow(TypeStored, c, c.ReceivedAt)
}

// Reversed is the event of c reversed (c.Reversal set).
func Reversed(c claim.Claim) Row {
	return newRow(TypeReversed, c, c.Reversal.At)
}

func newRow(typ string, c claim.Claim, at time.Time) Row {
	e := event{EventID: uuid.NewString(), Type: typ, OccurredAt: at.UTC(), ID: c.ID, ClaimID: c.ExternalID,
		Status: c.Status(), NetFee: json.RawMessage(c.NetFee().String()), NetFeeCent: int64(c.NetFee()),
		ReceivedAt: c.ReceivedAt.UTC(), Replaces: c.Replaces}
	if r := c.Reversal; r != nil && typ == TypeReversed {
		e.Reason, e.Detail, e.ReplacedBy = r.Reason, r.Detail, r.ReplacedBy
	}
	fees := c.ProviderNetFees()
	for _, npi := range slices.Sorted(maps.Keys(fees)) {
		e.Providers = append(e.Providers, providerFee{ProviderNPI: npi,
			NetFee: json.RawMessage(fees[npi].String()), NetFeeCents: int64(fees[npi])})
	}
	body, err := json.Marshal(e)
	if err != nil {
		panic(err) // strings, numbers and times only
	}
	return Row{EventID: e.EventID, RoutingKey: typ, Body: body}
}
