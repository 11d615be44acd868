// Package events is claimd's side of the hand-off to payments: the events a
// stored or reversed claim writes to the outbox, in the transaction that
// stores or reverses it (the contract: schema/*.json, docs/events.md), and
// the relay that publishes them to RabbitMQ.
package events

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
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

// Stored is the event of c stored, at when it was committed.
func Stored(c claim.Claim) Row {
	return newRow(TypeStored, c, c.ReceivedAt)
}

// Reversed is the event of c reversed (c.Reversal set).
func Reversed(c claim.Claim) Row {
	return newRow(TypeReversed, c, c.Reversal.At)
}

// newRow writes the event by hand, into one buffer: it is built for every
// claim stored, inside the group commit. The same bytes as encoding/json of
// the event struct in event_internal_test.go (tested there), which is the
// form of every field.
func newRow(typ string, c claim.Claim, at time.Time) Row {
	id := uuid.NewString()
	b := make([]byte, 0, 320+80*len(c.Lines))
	b = append(b, `{"event_id":"`...)
	b = append(b, id...)
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, `","occurred_at":"`...)
	b = at.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","id":`...)
	b = appendString(b, c.ID)
	if c.ExternalID != "" {
		b = append(b, `,"claim_id":`...)
		b = appendString(b, c.ExternalID)
	}
	b = append(b, `,"status":"`...)
	b = append(b, c.Status()...)
	b = append(b, `","net_fee":`...)
	b = append(b, c.NetFee().String()...)
	b = append(b, `,"net_fee_cents":`...)
	b = strconv.AppendInt(b, int64(c.NetFee()), 10)
	b = append(b, `,"received_at":"`...)
	b = c.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","providers":[`...)
	for i, p := range providerFees(c) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"provider_npi":`...)
		b = appendString(b, p.npi)
		b = append(b, `,"net_fee":`...)
		b = append(b, p.fee.String()...)
		b = append(b, `,"net_fee_cents":`...)
		b = strconv.AppendInt(b, int64(p.fee), 10)
		b = append(b, '}')
	}
	b = append(b, ']')
	if c.Replaces != "" {
		b = append(b, `,"replaces":`...)
		b = appendString(b, c.Replaces)
	}
	if r := c.Reversal; r != nil && typ == TypeReversed {
		b = append(b, `,"reason":`...)
		b = appendString(b, r.Reason)
		if r.Detail != "" {
			b = append(b, `,"detail":`...)
			b = appendString(b, r.Detail)
		}
		if r.ReplacedBy != "" {
			b = append(b, `,"replaced_by":`...)
			b = appendString(b, r.ReplacedBy)
		}
	}
	b = append(b, '}')
	return Row{EventID: id, RoutingKey: typ, Body: b}
}

// providerFee is what a claim adds to one provider's total.
type providerFee struct {
	npi string
	fee claim.Cents
}

// providerFees sums the claim's net fees per provider, sorted by NPI: a
// claim has a few lines, so a sorted slice beats a map.
func providerFees(c claim.Claim) []providerFee {
	out := make([]providerFee, 0, len(c.Lines))
	for _, l := range c.Lines {
		i, found := slices.BinarySearchFunc(out, l.ProviderNPI, func(p providerFee, npi string) int {
			return strings.Compare(p.npi, npi)
		})
		if found {
			out[i].fee += l.NetFee()
			continue
		}
		out = slices.Insert(out, i, providerFee{npi: l.ProviderNPI, fee: l.NetFee()})
	}
	return out
}

// appendString appends s as encoding/json writes a string: printable ASCII
// other than '"', '\\', '<', '>' and '&' as it is, anything else through
// encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
