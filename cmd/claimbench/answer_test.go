package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// claimdAnswer renders c as claimd answers a stored claim (encoding/json of
// the documented fields, in their order, with the encoder's newline).
func claimdAnswer(t *testing.T, c *loadkit.Claim, id string) []byte {
	type line struct {
		loadkit.WireLine[json.Number]
		NetFee json.Number `json:"net_fee"`
	}
	a := struct {
		ID         string      `json:"id"`
		ClaimID    string      `json:"claim_id,omitempty"`
		Status     string      `json:"status"`
		NetFee     json.Number `json:"net_fee"`
		ReceivedAt string      `json:"received_at"`
		Lines      []line      `json:"lines"`
	}{ID: id, ClaimID: c.ExternalID, Status: "stored", NetFee: json.Number(loadkit.FormatCents(c.NetFee())),
		ReceivedAt: "2026-12-06T21:00:00.123456Z"}
	money := func(c int64) json.Number { return json.Number(loadkit.FormatCents(c)) }
	for _, l := range c.Lines {
		var q *string
		if l.Quadrant != "" {
			q = &l.Quadrant
		}
		a.Lines = append(a.Lines, line{loadkit.WireLine[json.Number]{
			ServiceDate: l.ServiceDate, SubmittedProcedure: l.Procedure, Quadrant: q, PlanGroup: l.PlanGroup,
			Subscriber: l.Subscriber, ProviderNPI: l.NPI, ProviderFees: money(l.Fees), AllowedFees: money(l.Allowed),
			MemberCoinsurance: money(l.Coinsurance), MemberCopay: money(l.Copay),
		}, money(l.NetFee())})
	}
	var b bytes.Buffer
	require.NoError(t, json.NewEncoder(&b).Encode(a))
	return b.Bytes()
}

func TestMatchAnswer(t *testing.T) {
	npis := []string{"1000000001", "1000000002", "1000000003"}
	gen := loadkit.NewGenerator(7, npis, 1.1, 8)
	for n := range 200 {
		c := gen.Claim(fmt.Sprintf("run-%d", n))
		if n%5 == 0 {
			c.ExternalID = "" // claim_id is left out of the answer
		}
		body := claimdAnswer(t, c, "0193a6f0-0000-7000-8000-00000000000a")

		id, ok := matchAnswer(c, body)
		require.True(t, ok, "claimd's answer for the claim sent matches: %s", body)
		require.Equal(t, "0193a6f0-0000-7000-8000-00000000000a", id)
		id, problem := checkAnswer(c, body)
		require.Empty(t, problem)
		require.Equal(t, "0193a6f0-0000-7000-8000-00000000000a", id)

		// Any changed field misses the fast match, and the decoder names it.
		changed := *c
		changed.Lines = append([]loadkit.Line(nil), c.Lines...)
		switch n % 4 {
		case 0:
			changed.Lines[len(c.Lines)-1].Copay++
		case 1:
			sub := []byte(changed.Lines[0].Subscriber)
			sub[0] = '0' + (sub[0]-'0'+1)%10
			changed.Lines[0].Subscriber = string(sub)
		case 2:
			changed.Lines[0].NPI = npis[(n+1)%len(npis)]
			if changed.Lines[0].NPI == c.Lines[0].NPI {
				changed.Lines[0].NPI = "1999999999"
			}
		case 3:
			changed.Lines = changed.Lines[:0]
		}
		_, ok = matchAnswer(&changed, body)
		require.False(t, ok, "case %d: %s", n%4, body)
		_, problem = checkAnswer(&changed, body)
		require.NotEmpty(t, problem)
	}

	_, ok := matchAnswer(gen.Claim("x"), []byte(`{"id":"","status":"stored"}`))
	require.False(t, ok, "an answer without an id")
}
