package events

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// event is the event's body as a struct: encoding/json of it is what newRow
// writes by hand, byte for byte.
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
	Providers  []fee           `json:"providers"`
	Replaces   string          `json:"replaces,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Detail     string          `json:"detail,omitempty"`
	ReplacedBy string          `json:"replaced_by,omitempty"`
}

type fee struct {
	ProviderNPI string          `json:"provider_npi"`
	NetFee      json.RawMessage `json:"net_fee"`
	NetFeeCents int64           `json:"net_fee_cents"`
}

func reference(typ, eventID string, c claim.Claim, at time.Time) []byte {
	e := event{EventID: eventID, Type: typ, OccurredAt: at.UTC(), ID: c.ID, ClaimID: c.ExternalID,
		Status: c.Status(), NetFee: json.RawMessage(c.NetFee().String()), NetFeeCent: int64(c.NetFee()),
		ReceivedAt: c.ReceivedAt.UTC(), Replaces: c.Replaces}
	if r := c.Reversal; r != nil && typ == TypeReversed {
		e.Reason, e.Detail, e.ReplacedBy = r.Reason, r.Detail, r.ReplacedBy
	}
	fees := c.ProviderNetFees()
	for _, npi := range slices.Sorted(maps.Keys(fees)) {
		e.Providers = append(e.Providers, fee{ProviderNPI: npi, NetFee: json.RawMessage(fees[npi].String()),
			NetFeeCents: int64(fees[npi])})
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return b
}

func TestNewRowWritesWhatEncodingJSONWrites(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.FixedZone("X", 3600))
	odd := []string{"PAY-1", "", "<b>&amp;</b>", "quote\"back\\slash", "tab\tnl\n\x01\x7f", "\u00e9t\u00e9 \u2028", "bad \xff", "\U0001F9B7"}
	for i, s := range odd {
		lines := make([]claim.Line, 1+i%5)
		for j := range lines {
			lines[j] = claim.Line{ProviderNPI: fmt.Sprintf("10000000%02d", (i*7+j*3)%4), ProviderFees: claim.Cents(i*1000 + j*7),
				AllowedFees: claim.Cents(j * 501), MemberCopay: 3}
		}
		c := claim.Claim{ID: "01a22397-b5be-7f3d-9c23-54112a0662b7", ExternalID: s, ReceivedAt: at, Lines: lines}
		row := Stored(c)
		require.Equal(t, string(reference(TypeStored, row.EventID, c, c.ReceivedAt)), string(row.Body))
		c.Replaces = "01a22397-b5be-7f3d-9c23-000000000001"
		c.Reversal = &claim.Reversal{At: at.Add(time.Minute), Reason: claim.ReasonReplaced, Detail: s, ReplacedBy: "r-" + s}
		for _, row := range []Row{Stored(c), Reversed(c)} {
			occurred := c.ReceivedAt
			if row.RoutingKey == TypeReversed {
				occurred = c.Reversal.At
			}
			require.Equal(t, string(reference(row.RoutingKey, row.EventID, c, occurred)), string(row.Body))
		}
	}
}

func BenchmarkStoredEvent(b *testing.B) {
	lines := make([]claim.Line, 4)
	for j := range lines {
		lines[j] = claim.Line{ProviderNPI: fmt.Sprintf("14977755%02d", j), ProviderFees: 25000, AllowedFees: 1000}
	}
	c := claim.Claim{ID: "01a22397-b5be-7f3d-9c23-54112a0662b7", ExternalID: "PAY-1", ReceivedAt: time.Now(), Lines: lines}
	b.Run("by-hand", func(b *testing.B) {
		for b.Loop() {
			Stored(c)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			reference(TypeStored, "0b9e2f4a-6d1c-4f7e-9a51-3c2d8e7f6a10", c, c.ReceivedAt)
		}
	})
}
