package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/testenv"
)

// One batch holds every case a claim can meet; each claim gets its own
// outcome and the totals move once per provider by exactly the stored claims.
func TestInsertClaimsBatchOutcomes(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()

	earlier := newClaim(t, line("1000000003", 9000))
	earlier.Sender, earlier.ExternalID = "client-a", "stored-before"
	_, err := insertOne(ctx, st, earlier, nil)
	require.NoError(t, err)

	keyReq := claim.KeyRequest{Scope: "client-a", Key: "k1", RequestHash: []byte("h"), Lease: time.Minute, TTL: time.Hour}
	lease, _, err := st.AcquireKey(ctx, keyReq)
	require.NoError(t, err)
	lostReq := keyReq
	lostReq.Key, lostReq.Lease = "k2", 50*time.Millisecond
	lost, _, err := st.AcquireKey(ctx, lostReq)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	_, _, err = st.AcquireKey(ctx, lostReq) // another request takes k2 over
	require.NoError(t, err)

	plain := newClaim(t, line("1000000001", 10000), line("1000000002", 2000))
	keyed := newClaim(t, line("1000000001", 3000))
	sameAgain := newClaim(t, line("1000000003", 9000)) // resends "stored-before"
	sameAgain.Sender, sameAgain.ExternalID = "client-a", "stored-before"
	reused := newClaim(t, line("1000000003", 1))
	reused.Sender, reused.ExternalID = "client-a", "stored-before"
	first := newClaim(t, line("1000000002", 700))
	first.Sender, first.ExternalID = "client-b", "in-batch"
	second := newClaim(t, line("1000000002", 700)) // the same claim, twice in one batch
	second.Sender, second.ExternalID = "client-b", "in-batch"
	orphan := newClaim(t, line("1000000004", 5000))

	b, err := st.InsertClaims(ctx, []claim.Pending{
		{Claim: plain}, {Claim: keyed, Lease: lease}, {Claim: sameAgain}, {Claim: reused},
		{Claim: first}, {Claim: second}, {Claim: orphan, Lease: lost},
	})
	require.NoError(t, err)
	require.Len(t, b.Claims, 7)
	require.Equal(t, claim.Stored{}, b.Claims[0])
	require.Equal(t, claim.Stored{}, b.Claims[1])
	require.Equal(t, claim.Stored{ExistingID: earlier.ID}, b.Claims[2])
	require.ErrorIs(t, b.Claims[3].Err, claim.ErrClaimIDReused)
	require.Equal(t, claim.Stored{}, b.Claims[4])
	require.Equal(t, claim.Stored{ExistingID: first.ID}, b.Claims[5])
	require.ErrorIs(t, b.Claims[6].Err, claim.ErrKeyInFlight)

	// Net fee of a line here is provider fees - 500 coinsurance.
	require.Equal(t, []claim.ProviderTotal{
		{ProviderNPI: "1000000001", NetFee: 9500 + 2500, Version: 1, Claims: 2},
		{ProviderNPI: "1000000002", NetFee: 1500 + 200, Version: 1, Claims: 2},
	}, b.Totals, "once per provider, in NPI order; nothing for refused or known claims")

	for _, c := range []claim.Claim{plain, keyed, first} {
		got, err := st.Claim(ctx, c.Sender, c.ID)
		require.NoError(t, err)
		require.Equal(t, c.Lines, got.Lines)
	}
	for _, c := range []claim.Claim{sameAgain, reused, second, orphan} {
		_, err := st.Claim(ctx, c.Sender, c.ID)
		require.ErrorIs(t, err, claim.ErrNotFound)
	}
	_, outcome, err := st.AcquireKey(ctx, keyReq)
	require.NoError(t, err)
	require.Equal(t, &claim.KeyOutcome{ClaimID: keyed.ID, Created: true}, outcome, "recorded in the batch")

	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []claim.ProviderTotal{
		{ProviderNPI: "1000000001", NetFee: 12000, Version: 1, Claims: 2},
		{ProviderNPI: "1000000003", NetFee: 8500, Version: 1, Claims: 1},
		{ProviderNPI: "1000000002", NetFee: 1700, Version: 1, Claims: 2},
	}, top)
}

// A batch the database refuses stores none of its claims.
func TestInsertClaimsBatchAllOrNothing(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	good := newClaim(t, line("1000000001", 5000))
	bad := newClaim(t, line("1000000002", 5000))
	bad.Lines[0].ProviderFees = -1 // refused by a CHECK constraint
	_, err := st.InsertClaims(ctx, []claim.Pending{{Claim: good}, {Claim: bad}})
	require.Error(t, err)
	_, err = st.Claim(ctx, "", good.ID)
	require.ErrorIs(t, err, claim.ErrNotFound)
	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Empty(t, top)
}

// Two batches holding the same two claim_ids in opposite orders, committed
// at once: each claim is stored once and neither batch fails (rows are
// inserted in external-id order, so the two cannot wait on each other).
func TestInsertClaimsOppositeOrdersDoNotDeadlock(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	for round := range 20 {
		a, b := newClaim(t, line("1000000001", 100)), newClaim(t, line("1000000002", 100))
		a.ExternalID, b.ExternalID = fmt.Sprintf("a-%d", round), fmt.Sprintf("b-%d", round)
		a2, b2 := a, b
		a2.ID, b2.ID = newClaim(t).ID, newClaim(t).ID // the same claims sent again, with ids of their own
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { _, errs[0] = st.InsertClaims(ctx, []claim.Pending{{Claim: a}, {Claim: b}}) })
		wg.Go(func() { _, errs[1] = st.InsertClaims(ctx, []claim.Pending{{Claim: b2}, {Claim: a2}}) })
		wg.Wait()
		require.NoError(t, errs[0], "round %d", round)
		require.NoError(t, errs[1], "round %d", round)
	}
	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, top, 2)
	for _, p := range top {
		require.Equal(t, 20*line(p.ProviderNPI, 100).NetFee(), p.NetFee, "each claim stored once")
	}
}

// A claim delivered again from the queue carries the id it was stored
// under: storing it again changes nothing, with or without a claim_id, alone
// or beside new claims, and even twice in one batch.
func TestInsertClaimsSameIDAgainIsNoOp(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	bare := newClaim(t, line("1000000001", 5000))
	named := newClaim(t, line("1000000002", 7000))
	named.ExternalID = "named-1"
	b, err := st.InsertClaims(ctx, []claim.Pending{{Claim: bare}, {Claim: named}})
	require.NoError(t, err)
	require.Equal(t, []claim.Stored{{}, {}}, b.Claims)

	fresh := newClaim(t, line("1000000003", 1500))
	twice := newClaim(t, line("1000000004", 1000))
	b, err = st.InsertClaims(ctx, []claim.Pending{{Claim: named}, {Claim: fresh}, {Claim: bare}, {Claim: twice}, {Claim: twice}})
	require.NoError(t, err)
	require.Equal(t, claim.Stored{ExistingID: named.ID}, b.Claims[0])
	require.Equal(t, claim.Stored{}, b.Claims[1])
	require.Equal(t, claim.Stored{ExistingID: bare.ID}, b.Claims[2])
	require.ElementsMatch(t, []claim.Stored{{}, {ExistingID: twice.ID}}, b.Claims[3:], "one of the two copies is stored")
	require.Equal(t, []claim.ProviderTotal{
		{ProviderNPI: "1000000003", NetFee: 1000, Version: 1, Claims: 1},
		{ProviderNPI: "1000000004", NetFee: 500, Version: 1, Claims: 1},
	}, b.Totals, "only the new claims move totals")

	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []claim.ProviderTotal{
		{ProviderNPI: "1000000002", NetFee: 6500, Version: 1, Claims: 1},
		{ProviderNPI: "1000000001", NetFee: 4500, Version: 1, Claims: 1},
		{ProviderNPI: "1000000003", NetFee: 1000, Version: 1, Claims: 1},
		{ProviderNPI: "1000000004", NetFee: 500, Version: 1, Claims: 1},
	}, top)
}
