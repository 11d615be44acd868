package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/testenv"
)

func TestIdempotencyKeyLifecycle(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	req := claim.KeyRequest{Scope: "c1", Key: "k", RequestHash: []byte("h1"), Lease: time.Minute, TTL: time.Hour}

	lease, earlier, err := st.AcquireKey(ctx, req)
	require.NoError(t, err)
	require.NotNil(t, lease)
	require.Nil(t, earlier)

	_, _, err = st.AcquireKey(ctx, req)
	require.ErrorIs(t, err, claim.ErrKeyInFlight, "held by the first request")
	var retry *claim.RetryAfter
	require.ErrorAs(t, err, &retry)
	require.InDelta(t, time.Minute.Seconds(), retry.After.Seconds(), 5, "retry when the lease ends")
	other := req
	other.RequestHash = []byte("h2")
	_, _, err = st.AcquireKey(ctx, other)
	require.ErrorIs(t, err, claim.ErrKeyReused)
	otherScope := req
	otherScope.Scope = "c2"
	lease2, _, err := st.AcquireKey(ctx, otherScope)
	require.NoError(t, err)
	require.NotNil(t, lease2, "keys of another client are another key")

	c := newClaim(t, line("1000000001", 5000))
	_, err = insertOne(ctx, st, c, lease)
	require.NoError(t, err)
	_, earlier, err = st.AcquireKey(ctx, req)
	require.NoError(t, err)
	require.Equal(t, &claim.KeyOutcome{ClaimID: c.ID, Created: true}, earlier)
}

// A request that died holding a key loses it when the lease ends; the claim
// of the dead request can then not be recorded against it.
func TestIdempotencyLeaseExpires(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	req := claim.KeyRequest{Scope: "", Key: "k", RequestHash: []byte("h"), Lease: 50 * time.Millisecond, TTL: time.Hour}
	dead, _, err := st.AcquireKey(ctx, req)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	alive, _, err := st.AcquireKey(ctx, req)
	require.NoError(t, err)
	require.NotNil(t, alive, "an expired lease can be taken over")

	_, err = insertOne(ctx, st, newClaim(t, line("1000000001", 5000)), dead)
	require.ErrorIs(t, err, claim.ErrKeyInFlight)
	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Empty(t, top, "the dead request's claim was rolled back whole")

	require.NoError(t, st.ReleaseKey(ctx, alive))
	again, _, err := st.AcquireKey(ctx, req)
	require.NoError(t, err)
	require.NotNil(t, again, "a released key is free at once")
}

// A lease asked for again with its own token (a queued claim delivered
// again after its worker died) is taken over at once; another token waits.
func TestIdempotencyLeaseTakenOverByItsToken(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	c := newClaim(t, line("1000000001", 5000))
	req := claim.KeyRequest{Key: "k", RequestHash: c.Fingerprint(), Lease: time.Hour, TTL: time.Hour, Token: uuid.MustParse(c.ID)}
	first, _, err := st.AcquireKey(ctx, req)
	require.NoError(t, err)
	other := req
	other.Token = uuid.New()
	_, _, err = st.AcquireKey(ctx, other)
	require.ErrorIs(t, err, claim.ErrKeyInFlight, "another request waits for the lease")

	again, _, err := st.AcquireKey(ctx, req)
	require.NoError(t, err)
	require.Equal(t, first, again, "the same token takes its lease over")
	_, err = insertOne(ctx, st, c, again)
	require.NoError(t, err)
	_, outcome, err := st.AcquireKey(ctx, other)
	require.NoError(t, err)
	require.Equal(t, &claim.KeyOutcome{ClaimID: c.ID, Created: true}, outcome)
}

func TestExpireKeys(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		_, _, err := st.AcquireKey(ctx, claim.KeyRequest{Key: k, RequestHash: []byte("h"), Lease: time.Minute, TTL: time.Millisecond})
		require.NoError(t, err)
	}
	_, _, err := st.AcquireKey(ctx, claim.KeyRequest{Key: "c", RequestHash: []byte("h"), Lease: time.Minute, TTL: time.Hour})
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	n, err := st.ExpireKeys(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
}

func TestExternalIDStoredOnce(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	first := newClaim(t, line("1000000001", 5000))
	first.ExternalID = "PAY-1"
	ins, err := insertOne(ctx, st, first, nil)
	require.NoError(t, err)
	require.Empty(t, ins.ExistingID)

	second := newClaim(t, line("1000000001", 5000))
	second.ExternalID = "PAY-1"
	ins, err = insertOne(ctx, st, second, nil)
	require.NoError(t, err)
	require.Equal(t, first.ID, ins.ExistingID)
	require.Empty(t, ins.Totals)
	got, err := st.Claim(ctx, "", first.ID)
	require.NoError(t, err)
	require.Equal(t, "PAY-1", got.ExternalID)
	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, claim.Cents(4500), top[0].NetFee, "counted once")
}
