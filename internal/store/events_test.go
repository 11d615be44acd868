package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

type outboxEvent struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Replaces string `json:"replaces"`
	Reason   string `json:"reason"`
}

// readOutbox returns the outbox's events in seq order, as the relay reads
// them, each checked against its schema.
func readOutbox(t *testing.T, dbURL string) []outboxEvent {
	t.Helper()
	st, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	defer st.Close()
	session, ok, err := st.TryRelayLock(context.Background())
	require.NoError(t, err)
	require.True(t, ok)
	defer session.Close()
	rows, err := session.UnsentEvents(context.Background(), 1<<20)
	require.NoError(t, err)
	var out []outboxEvent
	for _, row := range rows {
		require.NoError(t, events.Validate(row.Body), string(row.Body))
		var e outboxEvent
		require.NoError(t, json.Unmarshal(row.Body, &e))
		require.Equal(t, row.RoutingKey, e.Type)
		out = append(out, e)
	}
	return out
}

// With events on, a stored claim, a reversal and a correction each write
// their events in their own transaction, in order; a claim not stored (its
// claim_id sent again, a correction refused) writes none; with events off
// nothing is written.
func TestClaimsWriteTheirEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dbURL := testenv.MustStore(t)
	st.WriteEvents(true)
	a := newClaim(t, line("1000000001", 5000))
	a.ExternalID = "PAY-A"
	_, err := insertOne(ctx, st, a, nil)
	require.NoError(t, err)
	_, err = insertOne(ctx, st, a, nil) // sent again: stored before
	require.NoError(t, err)

	b := newClaim(t, line("1000000002", 7000))
	b.Replaces = "PAY-A"
	res, err := st.InsertClaims(ctx, []claim.Pending{{Claim: b}})
	require.NoError(t, err)
	require.NoError(t, res.Claims[0].Err)
	require.Equal(t, a.ID, res.Claims[0].Replaced)

	c := newClaim(t, line("1000000003", 9000))
	c.Replaces = a.ID // replaced already
	res, err = st.InsertClaims(ctx, []claim.Pending{{Claim: c}})
	require.NoError(t, err)
	var already *claim.AlreadyReplaced
	require.ErrorAs(t, res.Claims[0].Err, &already)
	require.Equal(t, b.ID, already.ReplacedBy)

	reversed, totals, err := st.ReverseClaim(ctx, "", b.ID, claim.ReasonPaymentFailed, "")
	require.NoError(t, err)
	require.Equal(t, claim.StatusReversed, reversed.Status())
	require.Len(t, totals, 7, "the all-time board, then the line's six others")
	require.Equal(t, "", totals[0].Board)
	require.EqualValues(t, 0, totals[0].NetFee)
	_, totals, err = st.ReverseClaim(ctx, "", b.ID, claim.ReasonOther, "")
	require.NoError(t, err)
	require.Empty(t, totals, "reversing again changes nothing")

	require.Equal(t, []outboxEvent{
		{Type: events.TypeStored, ID: a.ID},
		{Type: events.TypeReversed, ID: a.ID, Reason: claim.ReasonReplaced},
		{Type: events.TypeStored, ID: b.ID, Replaces: a.ID},
		{Type: events.TypeReversed, ID: b.ID, Replaces: a.ID, Reason: claim.ReasonPaymentFailed},
	}, readOutbox(t, dbURL))

	diffs, _, err := st.Audit(ctx)
	require.NoError(t, err)
	require.Empty(t, diffs, "totals equal the lines of the claims that count")

	st.WriteEvents(false)
	_, err = insertOne(ctx, st, newClaim(t, line("1000000004", 5000)), nil)
	require.NoError(t, err)
	require.Len(t, readOutbox(t, dbURL), 4, "events off: nothing written")
}
