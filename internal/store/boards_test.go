package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// datedLine is line(npi, fees) served on date, of plan/group plan.
func datedLine(npi string, fees claim.Cents, date, plan string) claim.Line {
	l := line(npi, fees)
	l.ServiceDate, _ = time.Parse(time.DateOnly, date)
	l.PlanGroup = plan
	return l
}

// Each line counts toward the day, ISO week, month and year of its service
// date and its plan/group's all-time and month boards; a reversal, and a
// correction's reversal, leave them. The figures here are worked out by
// hand; the audit recomputes every board from the lines in SQL.
func TestBoardsFollowTheirLines(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	const p1, p2 = "1000000001", "1000000002"
	// Net fee of a line here is provider fees - 500.
	a := newClaim(t, datedLine(p1, 1500, "2026-12-31", "G1"), datedLine(p1, 2500, "2027-01-01", "G1")) // 1000 + 2000
	b := newClaim(t, datedLine(p2, 4500, "2027-01-01", "G2"))                                          // 4000
	c := newClaim(t, datedLine(p1, 10500, "2026-12-31", "G1"))                                         // 10000, reversed below
	for _, x := range []claim.Claim{a, b, c} {
		_, err := insertOne(ctx, st, x, nil)
		require.NoError(t, err)
	}
	_, _, err := st.ReverseClaim(ctx, "", c.ID, claim.ReasonOther, "")
	require.NoError(t, err)
	d := newClaim(t, datedLine(p2, 600, "2027-01-04", "G2")) // 100, replaces b
	d.Replaces = b.ID
	_, err = insertOne(ctx, st, d, nil)
	require.NoError(t, err)

	board := func(w claim.Window, period, plan string) claim.Board {
		return claim.Board{Window: w, Period: period, PlanGroup: plan}
	}
	for _, want := range []struct {
		b      claim.Board
		npi    string
		total  claim.Cents
		claims int64
	}{
		{board(claim.WindowWeek, "2026-W53", ""), p1, 3000, 1}, // Dec 31 and Jan 1: one ISO week, one claim (c reversed)
		{board(claim.WindowYear, "2026", ""), p1, 1000, 1},
		{board(claim.WindowYear, "2027", ""), p1, 2000, 1},
		{board(claim.WindowDay, "2026-12-31", ""), p1, 1000, 1},
		{board(claim.WindowMonth, "2027-01", "G1"), p1, 2000, 1},
		{board(claim.WindowAll, "", "G1"), p1, 3000, 1},
		{board(claim.WindowAll, "", "G2"), p2, 100, 1},        // b replaced by d
		{board(claim.WindowWeek, "2027-W01", ""), p2, 100, 1}, // d, on Monday Jan 4
		{board(claim.WindowMonth, "2027-01", ""), p2, 100, 1}, // b left, d came
		{board(claim.WindowMonth, "2027-01", ""), p1, 2000, 1},
	} {
		got, err := st.BoardRank(ctx, want.b, want.npi)
		require.NoError(t, err, "%s %s", want.b.Key(), want.npi)
		require.Equal(t, want.total, got.NetFee, "%s %s", want.b.Key(), want.npi)
		require.Equal(t, want.claims, got.Claims, "%s %s", want.b.Key(), want.npi)
	}
	// p2's claims in week 2026-W53 were all reversed (b): no standing there.
	_, err = st.BoardRank(ctx, board(claim.WindowWeek, "2026-W53", ""), p2)
	require.ErrorIs(t, err, claim.ErrNotFound)
	_, err = st.BoardRank(ctx, board(claim.WindowDay, "2026-11-28", ""), p1)
	require.ErrorIs(t, err, claim.ErrNotFound)

	top, err := st.BoardTop(ctx, board(claim.WindowMonth, "2027-01", ""), 0, 10)
	require.NoError(t, err)
	require.Equal(t, []claim.ProviderTotal{{ProviderNPI: p1, NetFee: 2000}, {ProviderNPI: p2, NetFee: 100}}, withoutVersions(top))
	r, err := st.BoardRank(ctx, board(claim.WindowMonth, "2027-01", ""), p2)
	require.NoError(t, err)
	require.Equal(t, int64(2), r.Rank)

	diffs, checked, err := st.Audit(ctx)
	require.NoError(t, err)
	require.Empty(t, diffs, "every board equals its lines, as SQL computes them")
	require.Positive(t, checked)
}

// withoutVersions keeps of totals what an answer shows: NPI and total.
func withoutVersions(ps []claim.ProviderTotal) []claim.ProviderTotal {
	out := make([]claim.ProviderTotal, len(ps))
	for i, p := range ps {
		out[i] = claim.ProviderTotal{ProviderNPI: p.ProviderNPI, NetFee: p.NetFee}
	}
	return out
}

// A page of a provider's claims looks at a bounded number of the provider's
// lines, whoever's they are: a client with few claims at a busy provider
// gets short pages with a cursor, and following it finds every claim once.
//
// Not parallel: it sets findScanMax, which the parallel tests wait out.
func TestFindClaimsLooksAtABoundedRange(t *testing.T) {
	restore := store.SetFindScanMax(5)
	defer restore()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	const busy = "1000000001"
	var mine []string
	for i := range 12 {
		c := newClaim(t, line(busy, 1000))
		if i%4 == 0 { // claims 0, 4, 8 are the client's, among the others'
			c.Sender = "key:mine"
			mine = append([]string{c.ID}, mine...) // newest first
		} else {
			c.Sender = "key:other"
		}
		_, err := insertOne(ctx, st, c, nil)
		require.NoError(t, err)
	}
	var (
		got   []string
		pages int
	)
	q := claim.Query{ProviderNPI: busy, Limit: 2}
	for {
		pages++
		require.Less(t, pages, 10)
		found, next, err := st.FindClaims(ctx, "key:mine", q)
		require.NoError(t, err)
		for _, c := range found {
			got = append(got, c.ID)
		}
		if next == "" {
			break
		}
		q.Before = next
	}
	require.Equal(t, mine, got, "every claim of the client once, newest first")
	require.GreaterOrEqual(t, pages, 3, "12 lines, looked at 5 a page")
}
