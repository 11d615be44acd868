package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// inserted is what insertOne did.
type inserted struct {
	Totals     []claim.ProviderTotal
	ExistingID string
}

// insertOne stores one claim with InsertClaims; the claim's own refusal is
// returned as the error.
func insertOne(ctx context.Context, st *store.Store, c claim.Claim, lease *claim.KeyLease) (inserted, error) {
	b, err := st.InsertClaims(ctx, []claim.Pending{{Claim: c, Lease: lease}})
	if err != nil {
		return inserted{}, err
	}
	if err := b.Claims[0].Err; err != nil {
		return inserted{}, err
	}
	return inserted{Totals: b.Totals, ExistingID: b.Claims[0].ExistingID}, nil
}

func newClaim(t *testing.T, lines ...claim.Line) claim.Claim {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return claim.Claim{ID: id.String(), ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), Lines: lines}
}

func line(npi string, providerFees claim.Cents) claim.Line {
	return claim.Line{
		ServiceDate: time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC), SubmittedProcedure: "D0180",
		PlanGroup: "GRP-1000", Subscriber: "3730189502", ProviderNPI: npi,
		ProviderFees: providerFees, AllowedFees: 1000, MemberCoinsurance: 500, MemberCopay: 0,
	}
}

func TestInsertClaimRoundTripAndTotals(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()

	c := newClaim(t, line("1000000001", 15000), line("1000000002", 2000), line("1000000001", 1000))
	c.Lines[1].Quadrant = "UR"
	ins, err := insertOne(ctx, st, c, nil)
	require.NoError(t, err)
	require.Equal(t, []claim.ProviderTotal{
		{ProviderNPI: "1000000001", NetFee: (15000 - 500) + (1000 - 500), Version: 1, Claims: 1}, // two lines, one claim
		{ProviderNPI: "1000000002", NetFee: 1500, Version: 1, Claims: 1},
	}, ins.Totals)

	got, err := st.Claim(ctx, "", c.ID)
	require.NoError(t, err)
	require.Equal(t, c.ID, got.ID)
	require.True(t, c.ReceivedAt.Equal(got.ReceivedAt))
	require.Equal(t, c.Lines, got.Lines)

	ins, err = insertOne(ctx, st, newClaim(t, line("1000000002", 1500)), nil)
	require.NoError(t, err)
	require.Equal(t, []claim.ProviderTotal{{ProviderNPI: "1000000002", NetFee: 2500, Version: 2, Claims: 2}}, ins.Totals)
}

func TestClaimNotFound(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	_, err := st.Claim(context.Background(), "", uuid.NewString())
	require.ErrorIs(t, err, claim.ErrNotFound)
	_, err = st.Claim(context.Background(), "", "not-a-uuid")
	require.ErrorIs(t, err, claim.ErrNotFound)
}

// A claim the database refuses part-way leaves nothing behind: no claim, no
// line, no change to any total.
func TestInsertClaimAllOrNothing(t *testing.T) {
	t.Parallel()
	st, url := testenv.MustStore(t)
	ctx := context.Background()
	_, err := insertOne(ctx, st, newClaim(t, line("1000000001", 5000)), nil)
	require.NoError(t, err)

	bad := newClaim(t, line("1000000001", 5000), line("1000000003", 5000))
	bad.Lines[1].MemberCopay = -1 // violates a CHECK constraint on the second line
	_, err = insertOne(ctx, st, bad, nil)
	require.Error(t, err)

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var claims, lines int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM claims").Scan(&claims))
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM claim_lines").Scan(&lines))
	require.Equal(t, 1, claims)
	require.Equal(t, 1, lines)
	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 4500, Version: 1, Claims: 1}}, top)
}

// Claims naming the same providers in opposite orders, written at once, do not
// deadlock, and every change is counted exactly once.
func TestConcurrentInsertsKeepExactTotals(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	npis := []string{"1000000001", "1000000002", "1000000003", "1000000004"}

	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				var lines []claim.Line
				for j := range npis {
					k := j
					if w%2 == 1 {
						k = len(npis) - 1 - j
					}
					lines = append(lines, line(npis[k], 1500))
				}
				_, err := insertOne(ctx, st, newClaim(t, lines...), nil)
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	top, err := st.TopProviders(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, top, len(npis))
	for _, p := range top {
		require.Equal(t, claim.Cents(workers*perWorker*1000), p.NetFee, p.ProviderNPI)
		require.Equal(t, int64(workers*perWorker), p.Version, p.ProviderNPI)
	}
}

// Equal totals are ordered by NPI descending, as Redis's ZREVRANGE orders
// members with equal scores.
func TestTopProvidersOrder(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	for _, l := range []claim.Line{
		line("1000000005", 2500), line("1000000009", 2500), line("1000000001", 9500),
		line("1000000007", 500), line("1000000003", 2500),
	} {
		_, err := insertOne(ctx, st, newClaim(t, l), nil)
		require.NoError(t, err)
	}
	top, err := st.TopProviders(ctx, 0, 4)
	require.NoError(t, err)
	var got []string
	for _, p := range top {
		got = append(got, fmt.Sprintf("%s=%s", p.ProviderNPI, p.NetFee))
	}
	require.Equal(t, []string{"1000000001=90.00", "1000000009=20.00", "1000000005=20.00", "1000000003=20.00"}, got)
}

// noBoards keeps no period's board: a scan reads the all-time boards only
// (every plan's and each plan's).
var noBoards = claim.Retention{}.Oldest(time.Now())

func TestScanTotalsBatches(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		_, err := insertOne(ctx, st, newClaim(t, line(fmt.Sprintf("10000000%02d", i), 1000+claim.Cents(i))), nil)
		require.NoError(t, err)
	}
	var rows int
	seen := map[string]map[string]claim.Cents{}
	collect := func(batch []claim.ProviderTotal) error {
		require.LessOrEqual(t, len(batch), 3)
		rows += len(batch)
		for _, p := range batch {
			if seen[p.Board] == nil {
				seen[p.Board] = map[string]claim.Cents{}
			}
			seen[p.Board][p.ProviderNPI] = p.NetFee
		}
		return nil
	}
	scanned, err := st.ScanTotals(ctx, time.Time{}, noBoards, 3, collect)
	require.NoError(t, err)
	require.Equal(t, 14, rows, "every provider in the all-time board and its plan's")
	require.Len(t, seen[""], 7)
	require.Equal(t, claim.Cents(1006-500), seen[""]["1000000006"])
	require.Equal(t, seen[""], seen["a|g:GRP-1000"])

	// A retention reaching back to the lines' date (2018-03-28) reads their
	// periods' boards too; the sizes count them.
	since2018 := claim.Retention{claim.WindowDay: 1, claim.WindowWeek: 1, claim.WindowMonth: 1, claim.WindowYear: 1}.
		Oldest(time.Date(2018, 3, 28, 12, 0, 0, 0, time.UTC))
	rows, seen = 0, map[string]map[string]claim.Cents{}
	_, err = st.ScanTotals(ctx, time.Time{}, since2018, 3, collect)
	require.NoError(t, err)
	require.Equal(t, 7*7, rows)
	for _, board := range []string{"d:2018-03-28", "w:2018-W13", "m:2018-03", "y:2018", "m:2018-03|g:GRP-1000"} {
		require.Equal(t, seen[""], seen[board], board)
	}
	sizes, err := st.BoardSizes(ctx, since2018)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"": 7, "a|g:GRP-1000": 7, "d:2018-03-28": 7, "w:2018-W13": 7, "m:2018-03": 7,
		"y:2018": 7, "m:2018-03|g:GRP-1000": 7}, sizes)

	// Since the first scan's start only what changed afterwards comes back.
	_, err = insertOne(ctx, st, newClaim(t, line("1000000003", 2000)), nil)
	require.NoError(t, err)
	rows, seen = 0, map[string]map[string]claim.Cents{}
	_, err = st.ScanTotals(ctx, scanned, noBoards, 3, collect)
	require.NoError(t, err)
	want := map[string]claim.Cents{"1000000003": 1003 - 500 + 2000 - 500}
	require.Equal(t, map[string]map[string]claim.Cents{"": want, "a|g:GRP-1000": want}, seen)
}

func TestReconcileLockIsExclusive(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	release, ok, err := st.TryReconcileLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = st.TryReconcileLock(ctx)
	require.NoError(t, err)
	require.False(t, ok, "a second holder must be refused")
	release()
	release2, ok, err := st.TryReconcileLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "released lock can be taken again")
	release2()
}

func TestEnsureDatabaseCreatesMissingDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.MustDatabase(t) // a name the cleanup drops
	admin, err := pgx.Connect(ctx, testenv.AdminDatabaseURL())
	require.NoError(t, err)
	defer admin.Close(ctx)
	var name string
	require.NoError(t, func() error {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		return c.QueryRow(ctx, "SELECT current_database()").Scan(&name)
	}())
	_, err = admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	require.NoError(t, err)

	require.NoError(t, store.EnsureDatabase(ctx, url))
	require.NoError(t, store.EnsureDatabase(ctx, url), "an existing database is left alone")
	st, err := store.Open(ctx, url)
	require.NoError(t, err)
	st.Close()
}

// The ranking's name carries the timeline, so that a Redis ranking built
// before a failover is not trusted after it (fault scenario 9).
func TestRankingEpochNamesTheTimeline(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	epoch, err := st.RankingEpoch(context.Background())
	require.NoError(t, err)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f-]{27}/[0-9A-F]{8}$`, epoch)
	again, err := st.RankingEpoch(context.Background())
	require.NoError(t, err)
	require.Equal(t, epoch, again)
}
