package rank_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// redisTarget is a Redis the ranking tests run against, with a shard count.
type redisTarget struct {
	name   string
	shards int
	client func(t *testing.T) (redis.UniversalClient, string) // and a key prefix of the test's own
}

// redisTargets are a standalone Redis, with one shard and with many, and a
// six-node Redis Cluster with many shards spread over its masters.
var redisTargets = []redisTarget{
	{"standalone", 1, func(t *testing.T) (redis.UniversalClient, string) { return testenv.MustSharedRedis(t) }},
	{"standalone-16-shards", 16, func(t *testing.T) (redis.UniversalClient, string) { return testenv.MustSharedRedis(t) }},
	{"cluster-16-shards", 16, func(t *testing.T) (redis.UniversalClient, string) {
		c := testenv.SharedRedisCluster(t)
		return c.Client(), testenv.ClusterPrefix(t, c)
	}},
}

// forEachRedis runs test once per redisTarget, in parallel subtests.
func forEachRedis(t *testing.T, test func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys)) {
	for _, target := range redisTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			client, prefix := target.client(t)
			keys := rank.Keys{Prefix: prefix, Shards: target.shards}
			test(t, rank.NewRedis(client, keys), client, keys)
		})
	}
}

// rankingOf names the sorted set that holds npi.
func rankingOf(keys rank.Keys, npi string) string { return keys.Shard(keys.ShardOf(npi)).Ranking() }

// mustScores reads the whole ranking, every shard.
func mustScores(t *testing.T, client redis.UniversalClient, keys rank.Keys) map[string]claim.Cents {
	t.Helper()
	all, err := loadkit.Ranking(context.Background(), client, keys)
	require.NoError(t, err)
	out := make(map[string]claim.Cents, len(all))
	for npi, c := range all {
		out[npi] = claim.Cents(c)
	}
	return out
}

// markComplete marks every shard complete, as a rebuild from epoch would.
func markComplete(t *testing.T, client redis.UniversalClient, keys rank.Keys, epoch string) {
	t.Helper()
	for i := range keys.ShardCount() {
		require.NoError(t, client.Set(context.Background(), keys.Shard(i).Complete(), epoch, 0).Err())
	}
}

func TestApplyIsIdempotentAndOrderIndependent(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		history := []claim.ProviderTotal{
			{ProviderNPI: "1000000001", NetFee: 100, Version: 1, Claims: 1},
			{ProviderNPI: "1000000001", NetFee: 350, Version: 2, Claims: 1},
			{ProviderNPI: "1000000001", NetFee: -25, Version: 3, Claims: 1},
			{ProviderNPI: "1000000002", NetFee: 900_000_000_000_01, Version: 1, Claims: 1}, // 16 digits: exact beyond Lua's 14
		}
		// Every order, each write twice: the newest version always wins.
		for round := 0; round < 20; round++ {
			writes := append(append([]claim.ProviderTotal{}, history...), history...)
			rand.Shuffle(len(writes), func(i, j int) { writes[i], writes[j] = writes[j], writes[i] })
			for _, w := range writes {
				_, err := r.Apply(ctx, []claim.ProviderTotal{w})
				require.NoError(t, err)
			}
			require.Equal(t, map[string]claim.Cents{"1000000001": -25, "1000000002": 900_000_000_000_01},
				mustScores(t, client, keys))
		}
		n, err := r.Apply(ctx, history)
		require.NoError(t, err)
		require.Zero(t, n, "applying what Redis already holds changes nothing")
		versions, err := loadkit.RankVersions(ctx, client, keys)
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"1000000001": 3, "1000000002": 1}, versions)
	})
}

// One call may carry thousands of providers (a batch of 4,096 lines), and
// the newest version of a provider named twice in one call wins.
func TestApplyManyProvidersInOneCall(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		want := map[string]claim.Cents{}
		var totals []claim.ProviderTotal
		for i := range 2500 {
			npi := fmt.Sprintf("%010d", 1_000_000_000+i)
			totals = append(totals, claim.ProviderTotal{ProviderNPI: npi, NetFee: claim.Cents(i*7 - 300), Version: 1, Claims: 1})
			want[npi] = claim.Cents(i*7 - 300)
		}
		n, err := r.Apply(ctx, totals)
		require.NoError(t, err)
		require.Equal(t, 2500, n)
		require.Equal(t, want, mustScores(t, client, keys))

		for i := range totals {
			totals[i].NetFee, totals[i].Version = totals[i].NetFee+1, 2
			want[totals[i].ProviderNPI]++
		}
		n, err = r.Apply(ctx, totals)
		require.NoError(t, err)
		require.Equal(t, 2500, n)
		require.Equal(t, want, mustScores(t, client, keys))

		older := claim.ProviderTotal{ProviderNPI: totals[0].ProviderNPI, NetFee: -1, Version: 1, Claims: 1}
		newer := claim.ProviderTotal{ProviderNPI: totals[1].ProviderNPI, NetFee: 42, Version: 3, Claims: 1}
		want[newer.ProviderNPI] = 42
		for i := range totals {
			totals[i].NetFee, totals[i].Version = totals[i].NetFee+1, 4
			want[totals[i].ProviderNPI]++
		}
		totals[1].Version = 2 // older than newer's
		want[newer.ProviderNPI] = 42
		_, err = r.Apply(ctx, append(append([]claim.ProviderTotal{newer}, totals...), older, newer))
		require.NoError(t, err)
		require.Equal(t, want, mustScores(t, client, keys))
	})
}

func TestTopProvidersNeedsCompleteSet(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		_, err := r.Apply(ctx, []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 100, Version: 1, Claims: 1}})
		require.NoError(t, err)
		_, err = r.TopProviders(ctx, 0, 10)
		require.ErrorIs(t, err, rank.ErrIncomplete, "a set without its marker may be missing providers")

		markComplete(t, client, keys, "1")
		top, err := r.TopProviders(ctx, 0, 10)
		require.NoError(t, err)
		require.Equal(t, []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 100}}, top)
	})
}

// The top of many shards merges into exactly the order of one sorted set:
// by total, ties by NPI, both descending, at every limit.
func TestTopProvidersMergesShardsExactly(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		want := applyComplete(t, r, client, keys, 300, func(i int) claim.Cents {
			if i%97 == 0 {
				return claim.Cents(i) * 1000
			}
			return claim.Cents(i%5-2) * 100 // five totals, sixty providers on each
		})
		for _, limit := range []int{1, 3, 10, 61, 100, 300, 301} {
			top, err := r.TopProviders(ctx, 0, limit)
			require.NoError(t, err)
			require.Equal(t, sortedTop(want, limit), top, "limit %d", limit)
		}
	})
}

// applyComplete writes n providers of npiList(n), the i-th with total(i) and
// one claim, marks the ranking complete, and returns the totals by NPI.
func applyComplete(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys, n int, total func(i int) claim.Cents) map[string]claim.Cents {
	t.Helper()
	want := map[string]claim.Cents{}
	var totals []claim.ProviderTotal
	for i, npi := range npiList(n) {
		want[npi] = total(i)
		totals = append(totals, claim.ProviderTotal{ProviderNPI: npi, NetFee: want[npi], Version: 1, Claims: 1})
	}
	_, err := r.Apply(context.Background(), totals)
	require.NoError(t, err)
	markComplete(t, client, keys, "1")
	return want
}

// randomClaim makes a claim of 1 to 4 lines over npis and returns what it
// adds to each provider, computed here independently of the store.
func randomClaim(npis []string) (claim.Claim, map[string]claim.Cents) {
	c := claim.Claim{ID: uuid.NewString(), ReceivedAt: time.Now()}
	owed := map[string]claim.Cents{}
	for j := 0; j < 1+rand.IntN(4); j++ {
		l := claim.Line{ServiceDate: time.Now(), SubmittedProcedure: "D0180", PlanGroup: "G", Subscriber: "S",
			ProviderNPI: npis[rand.IntN(len(npis))], ProviderFees: claim.Cents(rand.IntN(100000)),
			AllowedFees: claim.Cents(rand.IntN(50000)), MemberCopay: claim.Cents(rand.IntN(3000))}
		c.Lines = append(c.Lines, l)
		owed[l.ProviderNPI] += l.ProviderFees + l.MemberCopay - l.AllowedFees
	}
	return c, owed
}

// insertClaim stores c and, when ranking is not nil, applies its totals.
func insertClaim(st *store.Store, ranking *rank.Redis, c claim.Claim) error {
	b, err := st.InsertClaims(context.Background(), []claim.Pending{{Claim: c}})
	if err == nil {
		err = b.Claims[0].Err
	}
	if err == nil && ranking != nil {
		_, err = ranking.Apply(context.Background(), append(b.Totals, b.Boards...))
	}
	return err
}

// insertRandomClaims writes n random claims over npis and returns the exact
// totals computed here, independently of the store.
func insertRandomClaims(t *testing.T, st *store.Store, ranking *rank.Redis, n int, npis []string) map[string]claim.Cents {
	t.Helper()
	want := map[string]claim.Cents{}
	for i := 0; i < n; i++ {
		c, owed := randomClaim(npis)
		require.NoError(t, insertClaim(st, ranking, c))
		for npi, v := range owed {
			want[npi] += v
		}
	}
	return want
}

func npiList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("1%09d", i)
	}
	return out
}

func newReconciler(st *store.Store, r *rank.Redis, batch int) *rank.Reconciler {
	return rank.NewReconciler(st, r, rank.ReconcilerConfig{BatchSize: batch}, rank.NewMetrics(prometheus.NewRegistry()), nil)
}

func TestReconcileRebuildsLostSetAndRepairsDrift(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		st, _ := testenv.MustStore(t)
		ctx := context.Background()
		want := insertRandomClaims(t, st, nil, 200, npiList(50)) // Redis never told

		rec := newReconciler(st, r, 7)
		res, err := rec.RunOnce(ctx, rank.Auto)
		require.NoError(t, err)
		require.True(t, res.Rebuilt, "no marker: the set is rebuilt whole")
		// Every line is of today and one plan: each provider has the same
		// total in the all-time board and six others (see claim.BoardsOf).
		require.Equal(t, 7*len(want), res.Providers)
		var lost claim.Cents
		for _, c := range want {
			lost += max(c, -c)
		}
		require.Equal(t, 7*lost, res.Drift, "a lost set was off by every total, in every board")
		require.Equal(t, want, mustScores(t, client, keys))

		// Corrupt two scores and drop one member: a pass puts them back.
		require.NoError(t, client.ZAdd(ctx, rankingOf(keys, "1000000001"), redis.Z{Member: "1000000001", Score: 1}).Err())
		require.NoError(t, client.ZIncrBy(ctx, rankingOf(keys, "1000000002"), 5, "1000000002").Err())
		require.NoError(t, client.ZRem(ctx, rankingOf(keys, "1000000003"), "1000000003").Err())
		res, err = rec.RunOnce(ctx, rank.Auto)
		require.NoError(t, err)
		require.False(t, res.Rebuilt)
		require.Equal(t, 3, res.Repaired)
		abs := func(c claim.Cents) claim.Cents { return max(c, -c) }
		require.Equal(t, abs(want["1000000001"]-1)+5+abs(want["1000000003"]), res.Drift)
		require.Equal(t, want, mustScores(t, client, keys))

		res, err = rec.RunOnce(ctx, rank.Auto)
		require.NoError(t, err)
		require.Zero(t, res.Repaired, "nothing left to repair")
	})
}

// Writes that land while a rebuild runs are in the rebuilt set: the rebuild
// neither loses them nor overwrites them with its older snapshot.
func TestRebuildKeepsConcurrentWrites(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		st, _ := testenv.MustStore(t)
		ctx := context.Background()
		npis := npiList(200)
		insertRandomClaims(t, st, r, 300, npis)

		var (
			wg       sync.WaitGroup
			stop     = make(chan struct{})
			writeErr error
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for writeErr == nil {
				select {
				case <-stop:
					return
				default:
					c, _ := randomClaim(npis)
					writeErr = insertClaim(st, r, c)
				}
			}
		}()
		rec := newReconciler(st, r, 5) // small batches: the rebuild takes many round trips
		for i := 0; i < 5; i++ {
			_, err := rec.RunOnce(ctx, rank.Rebuild)
			require.NoError(t, err)
		}
		close(stop)
		wg.Wait()
		require.NoError(t, writeErr)

		var (
			want         = map[string]claim.Cents{}
			wantVersions = map[string]int64{}
		)
		_, err := st.ScanTotals(ctx, time.Time{}, nil, 1000, func(b []claim.ProviderTotal) error {
			for _, p := range b {
				if p.Board != "" {
					continue
				}
				want[p.ProviderNPI], wantVersions[p.ProviderNPI] = p.NetFee, p.Version
			}
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, want, mustScores(t, client, keys))
		versions, err := loadkit.RankVersions(ctx, client, keys)
		require.NoError(t, err)
		require.Equal(t, wantVersions, versions)
		generations := map[string]bool{}
		for i := range keys.ShardCount() {
			k := keys.Shard(i)
			exists, err := client.Exists(ctx, k.BuildRanking(), k.BuildGeneration()).Result()
			require.NoError(t, err)
			require.Zero(t, exists, "no build keys left behind")
			hashes, err := loadkit.ScanKeys(ctx, client, k.VersionsPattern("*"))
			require.NoError(t, err)
			base := strings.TrimSuffix(k.VersionsPattern("*"), "*:*")
			for _, key := range hashes {
				gen, rest, _ := strings.Cut(key[len(base):], ":")
				generations[gen] = true
				if strings.Contains(rest, ":") {
					continue // a period's board: it expires with its retention
				}
				ttl, err := client.TTL(ctx, key).Result()
				require.NoError(t, err)
				require.Equal(t, time.Duration(-1), ttl, "the live versions must not expire")
			}
		}
		require.Len(t, generations, 1, "the versions of earlier rebuilds are gone")
	})
}

func TestRebuildOfEmptyTruthMarksComplete(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, _ redis.UniversalClient, _ rank.Keys) {
		st, _ := testenv.MustStore(t)
		res, err := newReconciler(st, r, 10).RunOnce(context.Background(), rank.Auto)
		require.NoError(t, err)
		require.True(t, res.Rebuilt)
		top, err := r.TopProviders(context.Background(), 0, 10)
		require.NoError(t, err)
		require.Empty(t, top)
	})
}

func TestReconcileSkipsWhenAnotherInstanceHoldsTheLock(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, _ redis.UniversalClient, _ rank.Keys) {
		st, _ := testenv.MustStore(t)
		release, ok, err := st.TryReconcileLock(context.Background())
		require.NoError(t, err)
		require.True(t, ok)
		defer release()
		res, err := newReconciler(st, r, 10).RunOnce(context.Background(), rank.Auto)
		require.NoError(t, err)
		require.True(t, res.Skipped)
	})
}

func sortedTop(want map[string]claim.Cents, limit int) []claim.ProviderTotal {
	var all []claim.ProviderTotal
	for npi, c := range want {
		all = append(all, claim.ProviderTotal{ProviderNPI: npi, NetFee: c})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].NetFee != all[j].NetFee {
			return all[i].NetFee > all[j].NetFee
		}
		return all[i].ProviderNPI > all[j].ProviderNPI
	})
	if len(all) > limit {
		all = all[:limit]
	}
	return all
}

func withoutVersions(ps []claim.ProviderTotal) []claim.ProviderTotal {
	out := make([]claim.ProviderTotal, len(ps))
	for i, p := range ps {
		out[i] = claim.ProviderTotal{ProviderNPI: p.ProviderNPI, NetFee: p.NetFee}
	}
	return out
}

func TestFallbackAnswersFromPostgresWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	server := testenv.MustRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: server.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	r := rank.NewRedis(client, rank.Keys{Prefix: "t:"})
	ctx := context.Background()
	want := insertRandomClaims(t, st, r, 150, npiList(40))
	_, err := newReconciler(st, r, 100).RunOnce(ctx, rank.Auto)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	fb := rank.NewFallback(r, st, rank.FallbackConfig{BreakerFailures: 3, BreakerOpenFor: 200 * time.Millisecond},
		rank.NewMetrics(reg), testenv.Logger(t))
	top, source, err := fb.TopProviders(ctx, 0, 20)
	require.NoError(t, err)
	require.Equal(t, claim.SourceRedis, source)
	require.Equal(t, sortedTop(want, 20), top)

	server.Stop()
	for i := 0; i < 6; i++ { // past the breaker's threshold: it opens, answers keep coming
		top, source, err = fb.TopProviders(ctx, 0, 20)
		require.NoError(t, err)
		require.Equal(t, claim.SourcePostgres, source)
		require.Equal(t, sortedTop(want, 20), withoutVersions(top))
	}
	require.Equal(t, 2.0, gaugeValue(t, reg, "claimd_redis_breaker_state"), "breaker open")

	server.Start() // back, but empty: still Postgres until a rebuild
	time.Sleep(250 * time.Millisecond)
	_, source, err = fb.TopProviders(ctx, 0, 20)
	require.NoError(t, err)
	require.Equal(t, claim.SourcePostgres, source)
	_, err = newReconciler(st, r, 100).RunOnce(ctx, rank.Auto)
	require.NoError(t, err)
	top, source, err = fb.TopProviders(ctx, 0, 20)
	require.NoError(t, err)
	require.Equal(t, claim.SourceRedis, source)
	require.Equal(t, sortedTop(want, 20), top)
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// interleavedTruth commits and applies a claim in the middle of every scan,
// after the scan's snapshot was taken: the moment a rebuild could lose it.
type interleavedTruth struct {
	*store.Store
	t       *testing.T
	ranking *rank.Redis
	npis    []string
}

func (it interleavedTruth) ScanTotals(ctx context.Context, since time.Time, oldest map[claim.Window]string, batch int, fn func([]claim.ProviderTotal) error) (time.Time, error) {
	first := true
	return it.Store.ScanTotals(ctx, since, oldest, batch, func(b []claim.ProviderTotal) error {
		if first {
			first = false
			c, _ := randomClaim(it.npis)
			require.NoError(it.t, insertClaim(it.Store, it.ranking, c))
		}
		return fn(b)
	})
}

func TestRebuildKeepsWritesCommittedAfterItsSnapshot(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		st, _ := testenv.MustStore(t)
		ctx := context.Background()
		npis := npiList(30)
		insertRandomClaims(t, st, r, 100, npis)

		truth := interleavedTruth{Store: st, t: t, ranking: r, npis: npis}
		rec := rank.NewReconciler(truth, r, rank.ReconcilerConfig{BatchSize: 4}, rank.NewMetrics(prometheus.NewRegistry()), nil)
		for i := 0; i < 3; i++ {
			res, err := rec.RunOnce(ctx, rank.Rebuild)
			require.NoError(t, err)
			require.True(t, res.Rebuilt)

			want := map[string]claim.Cents{}
			_, err = st.ScanTotals(ctx, time.Time{}, nil, 1000, func(b []claim.ProviderTotal) error {
				for _, p := range b {
					if p.Board != "" {
						continue
					}
					want[p.ProviderNPI] = p.NetFee
				}
				return nil
			})
			require.NoError(t, err)
			require.Equal(t, want, mustScores(t, client, keys), "rebuild %d", i)
		}
	})
}

// A Redis that outlived its database (recreated, with other totals) is not
// trusted: the next pass rebuilds it from the database it now serves.
func TestRankingFromAnotherDatabaseIsRebuilt(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		old, _ := testenv.MustStore(t)
		current, _ := testenv.MustStore(t)
		ctx := context.Background()
		insertRandomClaims(t, old, r, 50, npiList(20))
		_, err := newReconciler(old, r, 100).RunOnce(ctx, rank.Auto)
		require.NoError(t, err)

		want := insertRandomClaims(t, current, nil, 30, []string{"2000000001", "2000000002"})
		epoch, err := current.RankingEpoch(ctx)
		require.NoError(t, err)
		r.ExpectEpoch(epoch)
		_, err = r.TopProviders(ctx, 0, 10)
		require.ErrorIs(t, err, rank.ErrIncomplete, "readers do not trust another database's ranking")
		res, err := newReconciler(current, r, 100).RunOnce(ctx, rank.Auto)
		require.NoError(t, err)
		require.True(t, res.Rebuilt)
		require.Equal(t, want, mustScores(t, client, keys))
	})
}

// The versions hashes are sized at each rebuild; when the providers outgrow
// them, the next full pass rebuilds with more hashes.
func TestFullPassRebuildsWhenProvidersOutgrowTheVersions(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		st, dbURL := testenv.MustStore(t)
		ctx := context.Background()
		rec := newReconciler(st, r, 500)
		res, err := rec.RunOnce(ctx, rank.Auto)
		require.NoError(t, err)
		require.True(t, res.Rebuilt, "the first pass builds the set")
		gen, err := client.Get(ctx, keys.Shard(0).Generation()).Result()
		require.NoError(t, err)
		_, layout, _ := rank.ParseGeneration(gen)
		require.Equal(t, 1, layout.All, "no providers: one digit, %q", gen)

		conn, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		// 1300 providers a shard: more than 10 listpack hashes hold.
		providers := 1300 * keys.ShardCount()
		_, err = conn.Exec(ctx, `INSERT INTO provider_totals (provider_npi, total_net_fee_cents, version, claims)
		SELECT (1000000000 + g)::text, g, 1, 1 FROM generate_series(1, $1::int) g`, providers)
		require.NoError(t, err)

		res, err = rec.RunOnce(ctx, rank.Compare)
		require.NoError(t, err)
		require.True(t, res.Rebuilt, "1300 providers a shard do not fit 10 listpack hashes")
		gen, err = client.Get(ctx, keys.Shard(0).Generation()).Result()
		require.NoError(t, err)
		_, layout, _ = rank.ParseGeneration(gen)
		require.Equal(t, 2, layout.All, "%q", gen)
		versions, err := loadkit.RankVersions(ctx, client, keys)
		require.NoError(t, err)
		require.Len(t, versions, providers)

		res, err = rec.RunOnce(ctx, rank.Compare)
		require.NoError(t, err)
		require.False(t, res.Rebuilt, "sized right now")
	})
}

// Totals up to claim.MaxTotal rank exactly: two providers a cent apart at
// the top of the range are in the order Postgres has them, from Redis as
// from the fallback; and reconciliation finds any score that is not exactly
// its total, by a cent or by a fraction of one.
func TestRankingExactUpToTheBound(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		st, dbURL := testenv.MustStore(t)
		ctx := context.Background()
		db, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		defer db.Close(ctx)
		// Totals as many claims would have brought them; the lines are not the
		// point here.
		_, err = db.Exec(ctx, `INSERT INTO provider_totals (provider_npi, total_net_fee_cents, version, claims) VALUES
	    ('1000000001', $1, 1, 1), ('1000000002', $2, 1, 1), ('1000000003', $3, 1, 1), ('1000000004', $4, 1, 1),
	    ('1000000005', 1000, 1, 1)`,
			int64(claim.MaxTotal), int64(claim.MaxTotal-1), int64(-claim.MaxTotal), int64(-claim.MaxTotal+1))
		require.NoError(t, err)
		rec := newReconciler(st, r, 7)
		_, err = rec.RunOnce(ctx, rank.Rebuild)
		require.NoError(t, err)

		want := []claim.ProviderTotal{
			{ProviderNPI: "1000000001", NetFee: claim.MaxTotal},
			{ProviderNPI: "1000000002", NetFee: claim.MaxTotal - 1},
			{ProviderNPI: "1000000005", NetFee: 1000},
			{ProviderNPI: "1000000004", NetFee: -claim.MaxTotal + 1},
			{ProviderNPI: "1000000003", NetFee: -claim.MaxTotal},
		}
		top, err := r.TopProviders(ctx, 0, 10)
		require.NoError(t, err)
		require.Equal(t, want, top, "Redis")
		fromPostgres, err := st.TopProviders(ctx, 0, 10)
		require.NoError(t, err)
		require.Equal(t, want, withoutVersions(fromPostgres), "Postgres")

		// One cent off at the top of the range; a fraction of a cent off.
		require.NoError(t, client.ZAdd(ctx, rankingOf(keys, "1000000002"), redis.Z{Member: "1000000002", Score: float64(claim.MaxTotal)}).Err())
		require.NoError(t, client.ZIncrBy(ctx, rankingOf(keys, "1000000005"), 0.25, "1000000005").Err())
		res, err := rec.RunOnce(ctx, rank.Compare)
		require.NoError(t, err)
		require.Equal(t, 2, res.Repaired)
		require.Equal(t, claim.Cents(2), res.Drift, "a cent, and a fraction of one counted as a cent")
		top, err = r.TopProviders(ctx, 0, 10)
		require.NoError(t, err)
		require.Equal(t, want, top, "repaired")

		// A rebuild measures the same drift.
		require.NoError(t, client.ZAdd(ctx, rankingOf(keys, "1000000001"), redis.Z{Member: "1000000001", Score: float64(claim.MaxTotal - 1)}).Err())
		res, err = rec.RunOnce(ctx, rank.Rebuild)
		require.NoError(t, err)
		require.Equal(t, claim.Cents(1), res.Drift)
	})
}

// Pages and a provider's rank follow the ranking's one order (total, ties by
// NPI, both descending) exactly, over shards and on a cluster: a page is the
// slice of the whole list, a provider's rank its place in it.
func TestPagesAndProviderRankFollowTheOrder(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		want := map[string]claim.Cents{}
		var totals []claim.ProviderTotal
		for i, npi := range npiList(120) {
			c := claim.Cents(i%4-1) * 100 // four totals, thirty providers on each
			totals = append(totals, claim.ProviderTotal{ProviderNPI: npi, NetFee: c, Version: 1, Claims: int64(1 + i%3)})
			want[npi] = c
		}
		_, err := r.Apply(ctx, totals)
		require.NoError(t, err)
		_, err = r.ProviderRank(ctx, totals[0].ProviderNPI)
		require.ErrorIs(t, err, rank.ErrIncomplete)
		markComplete(t, client, keys, "1")

		whole := sortedTop(want, len(want))
		for _, page := range []struct{ offset, limit int }{{0, 10}, {10, 10}, {29, 3}, {100, 100}, {119, 5}, {120, 5}, {500, 1}} {
			got, err := r.TopProviders(ctx, page.offset, page.limit)
			require.NoError(t, err)
			end := min(page.offset+page.limit, len(whole))
			require.Equal(t, whole[min(page.offset, len(whole)):end], got, "page %+v", page)
		}
		claims := map[string]int64{}
		for _, t := range totals {
			claims[t.ProviderNPI] = t.Claims
		}
		for i, p := range whole {
			got, err := r.ProviderRank(ctx, p.ProviderNPI)
			require.NoError(t, err)
			require.Equal(t, claim.Standing{ProviderNPI: p.ProviderNPI, NetFee: p.NetFee, Rank: int64(i + 1),
				Claims: claims[p.ProviderNPI]}, got)
		}
		_, err = r.ProviderRank(ctx, "1999999999")
		require.ErrorIs(t, err, claim.ErrNotFound, "a provider the ranking does not hold")
		_, err = r.Apply(ctx, []claim.ProviderTotal{{ProviderNPI: whole[0].ProviderNPI, NetFee: 0, Version: 2}})
		require.NoError(t, err)
		_, err = r.ProviderRank(ctx, whole[0].ProviderNPI)
		require.ErrorIs(t, err, claim.ErrNotFound, "a provider whose claims were all reversed")
	})
}

// A provider's rank counts the providers that tie with it by NPI, however
// many tie. With shards, each counts its own ties above it: a small group
// read and compared, a large one searched in Redis (more than tieScan per
// shard: here a thousand providers at one total, a hundred at another).
func TestProviderRankAmongManyTies(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		want := applyComplete(t, r, client, keys, 1102, func(i int) claim.Cents {
			switch {
			case i == 0:
				return 5001
			case i <= 1000:
				return 5000
			case i <= 1100:
				return 4000
			}
			return 3999
		})
		for i, p := range sortedTop(want, len(want)) {
			got, err := r.ProviderRank(ctx, p.ProviderNPI)
			require.NoError(t, err)
			require.Equal(t, int64(i+1), got.Rank, "provider %s at %s", p.ProviderNPI, p.NetFee)
		}
	})
}

// Postgres answers the same pages and ranks as Redis after a rebuild, with
// the same claim counts, computed here independently of the store.
func TestPostgresPagesAndRanksEqualRedis(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		st, _ := testenv.MustStore(t)
		npis := npiList(25)
		want := map[string]claim.Cents{}
		claims := map[string]int64{}
		for range 80 {
			c, owed := randomClaim(npis)
			require.NoError(t, insertClaim(st, nil, c))
			for npi, v := range owed {
				want[npi] += v
				claims[npi]++
			}
		}
		_, err := newReconciler(st, r, 7).RunOnce(ctx, rank.Compare)
		require.NoError(t, err)

		whole := sortedTop(want, len(want))
		for _, page := range []struct{ offset, limit int }{{0, 100}, {0, 7}, {7, 7}, {20, 10}} {
			fromPG, err := st.TopProviders(ctx, page.offset, page.limit)
			require.NoError(t, err)
			fromRedis, err := r.TopProviders(ctx, page.offset, page.limit)
			require.NoError(t, err)
			end := min(page.offset+page.limit, len(whole))
			require.Equal(t, whole[page.offset:end], withoutVersions(fromPG), "postgres page %+v", page)
			require.Equal(t, whole[page.offset:end], fromRedis, "redis page %+v", page)
		}
		for i, p := range whole {
			wantSt := claim.Standing{ProviderNPI: p.ProviderNPI, NetFee: p.NetFee, Rank: int64(i + 1), Claims: claims[p.ProviderNPI]}
			fromPG, err := st.ProviderRank(ctx, p.ProviderNPI)
			require.NoError(t, err)
			require.Equal(t, wantSt, fromPG)
			fromRedis, err := r.ProviderRank(ctx, p.ProviderNPI)
			require.NoError(t, err)
			require.Equal(t, wantSt, fromRedis)
		}
		_, err = st.ProviderRank(ctx, "1999999999")
		require.ErrorIs(t, err, claim.ErrNotFound)
	})
}
