package events_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
)

func sampleClaim() claim.Claim {
	line := func(npi string, fees claim.Cents) claim.Line {
		return claim.Line{ServiceDate: time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC), SubmittedProcedure: "D0180",
			PlanGroup: "GRP-1000", Subscriber: "3730189502", ProviderNPI: npi, ProviderFees: fees, AllowedFees: 1000}
	}
	return claim.Claim{ID: "01a22397-b5be-7f3d-9c23-54112a0662b7", ExternalID: "PAY-1",
		ReceivedAt: time.Date(2026, 12, 7, 0, 0, 0, 123456000, time.UTC),
		Lines:      []claim.Line{line("1497775531", 25050), line("1497775530", 500), line("1497775531", 100)}}
}

// The events a claim writes follow their schemas, carry what payments need
// (per-provider net fees in cents, exact) and no subscriber number.
func TestEventsFollowTheirSchemas(t *testing.T) {
	c := sampleClaim()
	stored := events.Stored(c)
	require.Equal(t, events.TypeStored, stored.RoutingKey)
	require.NoError(t, events.Validate(stored.Body), string(stored.Body))

	c.Reversal = &claim.Reversal{At: time.Now(), Reason: claim.ReasonPaymentFailed, Detail: "card declined"}
	reversed := events.Reversed(c)
	require.Equal(t, events.TypeReversed, reversed.RoutingKey)
	require.NoError(t, events.Validate(reversed.Body), string(reversed.Body))
	require.NotEqual(t, stored.EventID, reversed.EventID)

	var body struct {
		EventID   string `json:"event_id"`
		NetFee    json.Number
		NetCents  int64 `json:"net_fee_cents"`
		Reason    string
		Providers []struct {
			NPI   string `json:"provider_npi"`
			Cents int64  `json:"net_fee_cents"`
		}
	}
	require.NoError(t, json.Unmarshal(reversed.Body, &body))
	require.Equal(t, reversed.EventID, body.EventID)
	require.EqualValues(t, 25050+500+100-3000, body.NetCents)
	require.Equal(t, "payment_failed", body.Reason)
	require.Len(t, body.Providers, 2)
	require.Equal(t, "1497775530", body.Providers[0].NPI, "sorted by NPI")
	require.EqualValues(t, 500-1000, body.Providers[0].Cents)
	require.EqualValues(t, 25050+100-2000, body.Providers[1].Cents)
	for _, e := range []events.Row{stored, reversed} {
		require.NotContains(t, string(e.Body), "3730189502", "no subscriber number in an event")
	}

	// The schemas refuse what is not an event of theirs.
	bad := strings.Replace(string(stored.Body), `"status":"stored"`, `"status":"reversed"`, 1)
	require.Error(t, events.Validate([]byte(bad)))
	require.Error(t, events.Validate([]byte(strings.Replace(string(reversed.Body), `"reason":"payment_failed"`, `"reason":"bored"`, 1))))
	require.Error(t, events.Validate([]byte(`{"type":"claim.paid"}`)))
}
