package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/testenv"
)

// A claim belongs to the client that sent it: another client reads nothing
// under its id, exactly as for an id never stored.
func TestClaimReadOnlyByItsClient(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	c := newClaim(t, line("1000000001", 5000))
	c.Sender = "key:aaaaaaaaaaaa"
	_, err := insertOne(ctx, st, c, nil)
	require.NoError(t, err)

	got, err := st.Claim(ctx, "key:aaaaaaaaaaaa", c.ID)
	require.NoError(t, err)
	require.Equal(t, c.Lines, got.Lines)
	require.Equal(t, "key:aaaaaaaaaaaa", got.Sender)
	for _, other := range []string{"key:bbbbbbbbbbbb", ""} {
		_, err = st.Claim(ctx, other, c.ID)
		require.ErrorIs(t, err, claim.ErrNotFound, "read as %q", other)
	}
}

// setTotal puts a provider's total where a test needs it, as if many claims
// had brought it there.
func setTotal(t *testing.T, dbURL, npi string, total claim.Cents) {
	t.Helper()
	db, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(context.Background(), `
INSERT INTO provider_totals (provider_npi, total_net_fee_cents, version, claims) VALUES ($1, $2, 1, 1)
ON CONFLICT (provider_npi) DO UPDATE SET total_net_fee_cents = $2, version = provider_totals.version + 1`, npi, int64(total))
	require.NoError(t, err)
}

// A claim that would take a provider's total past claim.MaxTotal (up or
// down) is refused on its own, naming its lines of that provider; the rest
// of its batch is stored in the same transaction, as if it were not there.
func TestTotalStaysWithinTheBound(t *testing.T) {
	t.Parallel()
	st, dbURL := testenv.MustStore(t)
	ctx := context.Background()
	const high, low = "1000000001", "1000000002"
	setTotal(t, dbURL, high, claim.MaxTotal-20_000)
	setTotal(t, dbURL, low, -claim.MaxTotal+20_000)

	// Net fee of a line here is provider fees - 500.
	fits := newClaim(t, line(high, 10_500))                           // +10,000: up to MaxTotal-10,000
	over := newClaim(t, line("1000000003", 5000), line(high, 10_501)) // +10,001: one cent too far
	exact := newClaim(t, line(high, 10_500))                          // +10,000: exactly MaxTotal
	down := newClaim(t, line(low, 500))                               // a net fee of 0
	// 41 lines of -500: -20,500, past -MaxTotal.
	downOver := newClaim(t)
	for range 41 {
		downOver.Lines = append(downOver.Lines, line(low, 0))
	}
	other := newClaim(t, line("1000000004", 1500))
	b, err := st.InsertClaims(ctx, []claim.Pending{{Claim: fits}, {Claim: over}, {Claim: exact}, {Claim: down}, {Claim: downOver}, {Claim: other}})
	require.NoError(t, err)
	for _, i := range []int{0, 2, 3, 5} {
		require.Equal(t, claim.Stored{}, b.Claims[i], "claim %d stored", i)
	}
	var problems claim.Problems
	require.ErrorAs(t, b.Claims[1].Err, &problems)
	require.Len(t, problems, 1)
	require.Equal(t, 1, problems[0].Line, "the line of that provider")
	require.Equal(t, "provider_npi", problems[0].Field)
	require.Equal(t, claim.RuleProviderTotal, problems[0].Rule)
	require.Contains(t, problems[0].Detail, "90071992547409.91")
	require.ErrorAs(t, b.Claims[4].Err, &problems)
	require.Len(t, problems, 41, "each of its lines of that provider")

	totals := map[string]claim.Cents{}
	for _, tot := range b.Totals {
		totals[tot.ProviderNPI] = tot.NetFee
	}
	require.Equal(t, map[string]claim.Cents{high: claim.MaxTotal, low: -claim.MaxTotal + 20_000, "1000000004": 1000}, totals)
	for _, c := range []claim.Claim{over, downOver} {
		_, err := st.Claim(ctx, "", c.ID)
		require.ErrorIs(t, err, claim.ErrNotFound, "nothing of a refused claim is stored")
	}
	diffs, _, err := st.Audit(ctx)
	require.NoError(t, err)
	require.Len(t, diffs, 2, "only the totals set by hand differ from their lines")

	// At the bound, any claim that adds to it is refused, alone or in a batch.
	_, err = insertOne(ctx, st, newClaim(t, line(high, 501)), nil)
	require.ErrorAs(t, err, &problems)
	ins, err := insertOne(ctx, st, newClaim(t, line(high, 0)), nil) // -500 moves it back
	require.NoError(t, err)
	require.Equal(t, claim.MaxTotal-500, ins.Totals[0].NetFee)

	// Whatever writes the table, the bound holds.
	db, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(ctx, `UPDATE provider_totals SET total_net_fee_cents = total_net_fee_cents + 1000 WHERE provider_npi = $1`, high)
	require.ErrorContains(t, err, "provider_totals_exact_in_redis")
}

func TestCountKeys(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		_, _, err := st.AcquireKey(ctx, claim.KeyRequest{Scope: "c1", Key: k, RequestHash: []byte("h"), Lease: time.Second, TTL: time.Hour})
		require.NoError(t, err)
	}
	_, _, err := st.AcquireKey(ctx, claim.KeyRequest{Scope: "c2", Key: "a", RequestHash: []byte("h"), Lease: time.Second, TTL: time.Hour})
	require.NoError(t, err)
	for _, tc := range []struct {
		scope  string
		upTo   int64
		expect int64
	}{{"c1", 10, 3}, {"c1", 2, 2}, {"c2", 10, 1}, {"c3", 10, 0}} {
		n, err := st.CountKeys(ctx, tc.scope, tc.upTo)
		require.NoError(t, err)
		require.Equal(t, tc.expect, n, "%s up to %d", tc.scope, tc.upTo)
	}
}

// A reversal that would take a provider's total past the bound is refused
// as a problem (a 422), and changes nothing.
func TestReversalPastTheBoundIsRefused(t *testing.T) {
	t.Parallel()
	st, dbURL := testenv.MustStore(t)
	ctx := context.Background()
	c := newClaim(t, line("1000000001", 5000))
	_, err := insertOne(ctx, st, c, nil)
	require.NoError(t, err)
	setTotal(t, dbURL, "1000000001", -claim.MaxTotal+1)
	_, _, err = st.ReverseClaim(ctx, "", c.ID, claim.ReasonOther, "")
	var problems claim.Problems
	require.ErrorAs(t, err, &problems)
	require.Equal(t, claim.RuleProviderTotal, problems[0].Rule)
	got, err := st.Claim(ctx, "", c.ID)
	require.NoError(t, err)
	require.Equal(t, claim.StatusStored, got.Status())
}

// A correction whose reversal of the claim it replaces would take a
// provider's total past the bound is refused on its own, naming its field
// replaces: the rest of its batch is stored, and the replaced claim stays
// stored.
func TestCorrectionPastTheBoundIsRefused(t *testing.T) {
	t.Parallel()
	st, dbURL := testenv.MustStore(t)
	ctx := context.Background()
	a := newClaim(t, line("1000000001", 5000))
	_, err := insertOne(ctx, st, a, nil)
	require.NoError(t, err)
	setTotal(t, dbURL, "1000000001", -claim.MaxTotal+1)

	fix := newClaim(t, line("1000000002", 5000)) // another provider: the reversal alone moves 1000000001
	fix.Replaces = a.ID
	other := newClaim(t, line("1000000003", 1500))
	b, err := st.InsertClaims(ctx, []claim.Pending{{Claim: fix}, {Claim: other}})
	require.NoError(t, err)
	var problems claim.Problems
	require.ErrorAs(t, b.Claims[0].Err, &problems)
	require.Len(t, problems, 1)
	require.Equal(t, "replaces", problems[0].Field)
	require.Equal(t, claim.RuleProviderTotal, problems[0].Rule)
	require.Equal(t, claim.Stored{}, b.Claims[1], "the rest of the batch is stored")
	got, err := st.Claim(ctx, "", a.ID)
	require.NoError(t, err)
	require.Equal(t, claim.StatusStored, got.Status(), "the replaced claim stays stored")
	_, err = st.Claim(ctx, "", fix.ID)
	require.ErrorIs(t, err, claim.ErrNotFound)
}
