package httpapi

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/loadkit"
)

// claimResponse is the stored claim's answer as a struct, its lines in the
// wire form loadkit sends them with the net fee added: encoding/json of it is
// what appendClaim must write, byte for byte.
type claimResponse struct {
	ID         string         `json:"id"`
	ClaimID    string         `json:"claim_id,omitempty"` // the sender's own id, when it gave one
	Status     string         `json:"status"`             // stored or reversed
	ReversedAt *time.Time     `json:"reversed_at,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Detail     string         `json:"detail,omitempty"`
	ReplacedBy string         `json:"replaced_by,omitempty"`
	Replaces   string         `json:"replaces,omitempty"`
	NetFee     money          `json:"net_fee"`
	ReceivedAt time.Time      `json:"received_at"`
	Lines      []lineResponse `json:"lines"`
}

type lineResponse struct {
	loadkit.WireLine[money]
	NetFee money `json:"net_fee"`
}

func toClaimResponse(c claim.Claim) claimResponse {
	out := claimResponse{ID: c.ID, ClaimID: c.ExternalID, Status: c.Status(), Replaces: c.Replaces,
		NetFee: money(c.NetFee()), ReceivedAt: c.ReceivedAt, Lines: make([]lineResponse, len(c.Lines))}
	if r := c.Reversal; r != nil {
		at := r.At
		out.ReversedAt, out.Reason, out.Detail, out.ReplacedBy = &at, r.Reason, r.Detail, r.ReplacedBy
	}
	for i, l := range c.Lines {
		var quadrant *string
		if l.Quadrant != "" {
			q := l.Quadrant
			quadrant = &q
		}
		out.Lines[i] = lineResponse{loadkit.WireLine[money]{
			ServiceDate:        l.ServiceDate.Format(time.DateOnly),
			SubmittedProcedure: l.SubmittedProcedure,
			Quadrant:           quadrant,
			PlanGroup:          l.PlanGroup,
			Subscriber:         l.Subscriber,
			ProviderNPI:        l.ProviderNPI,
			ProviderFees:       money(l.ProviderFees),
			AllowedFees:        money(l.AllowedFees),
			MemberCoinsurance:  money(l.MemberCoinsurance),
			MemberCopay:        money(l.MemberCopay),
		}, money(l.NetFee())}
	}
	return out
}

func TestAppendClaimWritesWhatEncodingJSONWrites(t *testing.T) {
	at := time.Date(2026, 12, 6, 21, 0, 0, 123456000, time.UTC)
	line := claim.Line{
		ServiceDate: time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC), SubmittedProcedure: "D0180", Quadrant: "UR",
		PlanGroup: "GRP-1000", Subscriber: "3730189237", ProviderNPI: "1497775530",
		ProviderFees: 10000, AllowedFees: 10000, MemberCoinsurance: 0, MemberCopay: 0,
	}
	odd := []string{"", "<b>&amp;</b>", "quote\"back\\slash", "tab\tnew\nline\x01", "\u00e9t\u00e9 \u2028 \u2029", "bad \xff utf8", "emoji \U0001F9B7"}
	claims := []claim.Claim{
		{ID: "0193a6f0-0000-7000-8000-00000000000a", ReceivedAt: at, Lines: []claim.Line{line}},
		{ID: "0193a6f0-0000-7000-8000-00000000000b", ExternalID: "PAY-0001", ReceivedAt: at.Add(-123456000), Lines: []claim.Line{line, line}},
	}
	for i, s := range odd {
		l := line
		l.SubmittedProcedure, l.Quadrant, l.PlanGroup, l.Subscriber = "D"+s, s, s, s
		l.ProviderFees, l.AllowedFees, l.MemberCoinsurance, l.MemberCopay = claim.Cents(i*101), claim.Cents(i*7), claim.Cents(i), 5
		claims = append(claims, claim.Claim{ID: "id-" + s, ExternalID: s, ReceivedAt: at.Add(time.Duration(i) * time.Hour),
			Lines: []claim.Line{l, line}})
		// Reversed, voided or replaced, and a correction.
		claims = append(claims, claim.Claim{ID: "id-r-" + s, ExternalID: s, ReceivedAt: at, Lines: []claim.Line{l},
			Reversal: &claim.Reversal{At: at.Add(time.Duration(i) * time.Minute), Reason: claim.ReasonPaymentFailed, Detail: s}},
			claim.Claim{ID: "id-c-" + s, ReceivedAt: at, Lines: []claim.Line{l}, Replaces: "id-r-" + s,
				Reversal: &claim.Reversal{At: at, Reason: claim.ReasonReplaced, ReplacedBy: "id-n-" + s}})
	}
	for _, c := range claims {
		var want bytes.Buffer
		encodeJSON(&want, toClaimResponse(c))
		require.Equal(t, want.String(), string(appendClaim(nil, c)))
	}
	require.Contains(t, string(appendClaim(nil, claims[0])), `"provider_fees":100.00`)
	require.True(t, strings.HasSuffix(string(appendClaim(nil, claims[0])), "]}\n"))
}
