// Package claim owns the dental claim domain: the Claim and Line types, how
// raw input (JSON or CSV, any spelling of the field names) becomes a Claim,
// the validation rules, and the net fee. It imports nothing of the project.
package claim

import (
	"crypto/sha256"
	"strconv"
	"time"
)

// Claim is one dental insurance claim: one or more service lines. The service
// assigns ID and ReceivedAt when it accepts the claim.
type Claim struct {
	ID         string
	Sender     string // the client that sent it ("" without API keys); scopes ExternalID
	ExternalID string // the sender's own identifier, unique per sender when given; "" when not
	ReceivedAt time.Time
	Lines      []Line
	// Replaces is the id of the claim this one corrects, reversed in the
	// same transaction that stores this one; "" for a new claim. A claim
	// names it by id or by external id (Input); stored, it is the id.
	Replaces string
	// Reversal is set once the claim is reversed; nil while it counts.
	Reversal *Reversal
}

// Status is StatusStored, or StatusReversed once reversed.
func (c Claim) Status() string {
	if c.Reversal != nil {
		return StatusReversed
	}
	return StatusStored
}

// Line is one service line of a claim, normalized: procedure and quadrant are
// upper-case, money is in cents, the service date is a calendar date (UTC midnight).
type Line struct {
	ServiceDate        time.Time
	SubmittedProcedure string
	Quadrant           string // "" when the line names no quadrant
	PlanGroup          string
	Subscriber         string // PHI: never log it
	ProviderNPI        string
	ProviderFees       Cents
	AllowedFees        Cents
	MemberCoinsurance  Cents
	MemberCopay        Cents
}

// NetFee is provider_fees + member_coinsurance + member_copay - allowed_fees.
// It may be negative.
func (l Line) NetFee() Cents {
	return l.ProviderFees + l.MemberCoinsurance + l.MemberCopay - l.AllowedFees
}

// NetFee is the sum of the net fees of the claim's lines.
func (c Claim) NetFee() Cents {
	var sum Cents
	for _, l := range c.Lines {
		sum += l.NetFee()
	}
	return sum
}

// ProviderNetFees sums the claim's net fees per provider NPI: what the claim
// adds to each provider's total.
func (c Claim) ProviderNetFees() map[string]Cents {
	out := make(map[string]Cents, len(c.Lines))
	for _, l := range c.Lines {
		out[l.ProviderNPI] += l.NetFee()
	}
	return out
}

// ProviderTotal is a provider's running total of net fees at a version. The
// version grows by one with every change to the total, so of two totals for
// the same provider the one with the higher version is the newer.
type ProviderTotal struct {
	// Board is the key of the board the total is of (Board.Key); "" for
	// the all-time board of every plan, provider_totals.
	Board       string
	ProviderNPI string
	NetFee      Cents
	Version     int64
	Claims      int64 // the stored claims with a line of the provider (reversed ones leave)
}

// Standing is a provider's place in the ranking: its total, its rank
// (1-based, in the order the ranking lists providers: highest total first,
// equal totals by NPI descending) and its count of stored claims.
type Standing struct {
	ProviderNPI string
	NetFee      Cents
	Rank        int64
	Claims      int64
}

// Fingerprint identifies a claim's content: its external id and normalized
// lines, not how the sender spelled them ("$100.00" and 100 are one amount)
// nor the id, sender or time the service gave it. Two submissions with the
// same fingerprint are the same claim.
func (c Claim) Fingerprint() []byte {
	// The text hashed is that of fmt's %q and %d, written with strconv,
	// which costs far less than fmt on this hot path; stored hashes depend
	// on the text.
	b := make([]byte, 0, 64+96*len(c.Lines))
	b = append(strconv.AppendQuote(b, c.ExternalID), '\n')
	for _, l := range c.Lines {
		b = l.ServiceDate.AppendFormat(b, time.DateOnly)
		for _, s := range []string{l.SubmittedProcedure, l.Quadrant, l.PlanGroup, l.Subscriber, l.ProviderNPI} {
			b = strconv.AppendQuote(append(b, '|'), s)
		}
		for _, n := range []Cents{l.ProviderFees, l.AllowedFees, l.MemberCoinsurance, l.MemberCopay} {
			b = strconv.AppendInt(append(b, '|'), int64(n), 10)
		}
		b = append(b, '\n')
	}
	sum := sha256.Sum256(b)
	return sum[:]
}
