package rank_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// boardTruth is every board's totals and claim counts, worked out here from
// the claims sent, independently of the store and of Redis.
type boardTruth map[string]map[string]*claim.Standing // board key ("" all time) -> NPI

// add counts claim c in every board its lines count toward: sign +1 for c
// stored, -1 for c reversed.
func (bt boardTruth) add(c claim.Claim, sign int64) {
	counted := map[[2]string]bool{}
	for _, l := range c.Lines {
		keys := []string{""}
		for _, b := range claim.BoardsOf(l.ServiceDate, l.PlanGroup) {
			keys = append(keys, b.Key())
		}
		for _, key := range keys {
			if bt[key] == nil {
				bt[key] = map[string]*claim.Standing{}
			}
			st := bt[key][l.ProviderNPI]
			if st == nil {
				st = &claim.Standing{ProviderNPI: l.ProviderNPI}
				bt[key][l.ProviderNPI] = st
			}
			st.NetFee += claim.Cents(sign) * l.NetFee()
			if k := [2]string{key, l.ProviderNPI}; !counted[k] {
				counted[k] = true
				st.Claims += sign
			}
		}
	}
}

// order lists board key's providers in the ranking's order, ranked: those
// with claims (a provider whose claims there were all reversed has left it).
func (bt boardTruth) order(key string) []claim.Standing {
	var all []claim.Standing
	for _, st := range bt[key] {
		if st.Claims > 0 {
			all = append(all, *st)
		}
	}
	top := sortedTop(func() map[string]claim.Cents {
		m := map[string]claim.Cents{}
		for _, st := range all {
			m[st.ProviderNPI] = st.NetFee
		}
		return m
	}(), len(all))
	out := make([]claim.Standing, len(top))
	for i, p := range top {
		out[i] = *bt[key][p.ProviderNPI]
		out[i].Rank = int64(i + 1)
	}
	return out
}

// boardFor is the board of key ("" all time).
func boardFor(t *testing.T, key string) claim.Board {
	if key == "" {
		return claim.AllTime
	}
	b, ok := claim.ParseBoardKey(key)
	require.True(t, ok, key)
	return b
}

// requireBoards checks every board of want in Redis (those it keeps) and in
// Postgres (all): the whole list in order, and each provider's standing.
// Boards Redis does not keep must have no set there.
func requireBoards(t *testing.T, what string, want boardTruth, r *rank.Redis, st *store.Store, client redis.UniversalClient, keys rank.Keys) {
	t.Helper()
	ctx := context.Background()
	readers := map[string]rank.Reader{"postgres": st, "redis": r}
	for key := range want {
		b := boardFor(t, key)
		order := want.order(key)
		for source, reader := range readers {
			if source == "redis" && !r.Keeps(b) {
				for i := range keys.ShardCount() {
					n, err := client.Exists(ctx, keys.Shard(i).Board(key)).Result()
					require.NoError(t, err)
					require.Zero(t, n, "%s: redis holds board %q past its retention", what, key)
				}
				continue
			}
			top, err := reader.BoardTop(ctx, b, 0, 1000)
			require.NoError(t, err, "%s %s %q", what, source, key)
			require.Len(t, top, len(order), "%s %s %q", what, source, key)
			for i, p := range top {
				require.Equal(t, [2]any{order[i].ProviderNPI, order[i].NetFee}, [2]any{p.ProviderNPI, p.NetFee},
					"%s: %s board %q place %d", what, source, key, i+1)
			}
			for _, s := range order {
				got, err := reader.BoardRank(ctx, b, s.ProviderNPI)
				require.NoError(t, err)
				require.Equal(t, s, got, "%s: %s board %q", what, source, key)
			}
			for npi, s := range want[key] {
				if s.Claims == 0 {
					_, err := reader.BoardRank(ctx, b, npi)
					require.ErrorIs(t, err, claim.ErrNotFound, "%s: %s %q %s has no claims", what, source, key, npi)
				}
			}
		}
	}
}

// datedClaim is a claim of one to three lines over npis, on dates and plans
// chosen from those given, with fees in whole hundreds (so that totals tie).
func datedClaim(npis []string, dates []time.Time, plans []string) claim.Claim {
	c := claim.Claim{ID: uuid.NewString(), ReceivedAt: time.Now()}
	for range 1 + rand.IntN(3) {
		c.Lines = append(c.Lines, claim.Line{ServiceDate: dates[rand.IntN(len(dates))], SubmittedProcedure: "D0180",
			PlanGroup: plans[rand.IntN(len(plans))], Subscriber: "S", ProviderNPI: npis[rand.IntN(len(npis))],
			ProviderFees: claim.Cents(100 * rand.IntN(6)), AllowedFees: 0})
	}
	return c
}

// Every board, in Redis and in Postgres, equals what the claims sent and
// reversed give, worked out here: as claims are written, after a pass
// repairs a corrupted board, and after a rebuild of a lost ranking. Boards
// past their retention are not in Redis; those in it expire with their
// retention.
func TestBoardsInRedisEqualTheClaims(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, r *rank.Redis, client redis.UniversalClient, keys rank.Keys) {
		ctx := context.Background()
		st, _ := testenv.MustStore(t)
		rec := newReconciler(st, r, 50)
		_, err := rec.RunOnce(ctx, rank.Auto)
		require.NoError(t, err)

		today := time.Now().UTC().Truncate(24 * time.Hour)
		// Today, yesterday, last week, 40 days ago (past the days kept), 400
		// days ago (past the months kept, within the years).
		dates := []time.Time{today, today.AddDate(0, 0, -1), today.AddDate(0, 0, -8), today.AddDate(0, 0, -40), today.AddDate(0, 0, -400)}
		npis := npiList(12)
		want := boardTruth{}
		var stored []claim.Claim
		for range 70 {
			c := datedClaim(npis, dates, []string{"G1", "G2"})
			require.NoError(t, insertClaim(st, r, c))
			want.add(c, +1)
			stored = append(stored, c)
		}
		// A provider whose only claim is reversed leaves every board.
		lone := datedClaim([]string{"1999999999"}, dates[:1], []string{"G1"})
		require.NoError(t, insertClaim(st, r, lone))
		want.add(lone, +1)
		stored = append(stored, lone)
		for _, c := range append(stored[:6:6], lone) {
			_, totals, err := st.ReverseClaim(ctx, "", c.ID, claim.ReasonOther, "")
			require.NoError(t, err)
			_, err = r.Apply(ctx, totals)
			require.NoError(t, err)
			want.add(c, -1)
		}
		old := claim.Board{Window: claim.WindowDay, Period: claim.PeriodOf(claim.WindowDay, dates[3])}
		require.False(t, r.Keeps(old))
		require.Contains(t, want, old.Key())
		requireBoards(t, "written", want, r, st, client, keys)

		// A corrupted score and a lost member in a kept board: a pass
		// repairs both.
		board := claim.Board{Window: claim.WindowMonth, Period: claim.PeriodOf(claim.WindowMonth, today), PlanGroup: "G1"}
		members := want.order(board.Key())
		require.NotEmpty(t, members)
		first, last := members[0].ProviderNPI, members[len(members)-1].ProviderNPI
		require.NoError(t, client.ZAdd(ctx, keys.Shard(keys.ShardOf(first)).Board(board.Key()), redis.Z{Member: first, Score: -7}).Err())
		require.NoError(t, client.ZRem(ctx, keys.Shard(keys.ShardOf(last)).Board(board.Key()), last).Err())
		// And a provider with no claims left in it, back in its set.
		require.Zero(t, want[board.Key()][lone.Lines[0].ProviderNPI].Claims)
		require.NoError(t, client.ZAdd(ctx, keys.Shard(keys.ShardOf(lone.Lines[0].ProviderNPI)).Board(board.Key()),
			redis.Z{Member: lone.Lines[0].ProviderNPI, Score: 0}).Err())
		res, err := rec.RunOnce(ctx, rank.Compare)
		require.NoError(t, err)
		require.False(t, res.Rebuilt)
		require.Equal(t, 3-map[bool]int{true: 1}[first == last], res.Repaired)
		requireBoards(t, "repaired", want, r, st, client, keys)

		// Redis loses the ranking (every completeness marker): rebuilt.
		for i := range keys.ShardCount() {
			require.NoError(t, client.Del(ctx, keys.Shard(i).Complete()).Err())
		}
		res, err = rec.RunOnce(ctx, rank.Auto)
		require.NoError(t, err)
		require.True(t, res.Rebuilt)
		requireBoards(t, "rebuilt", want, r, st, client, keys)

		// A period's board expires an hour after its retention ends; a
		// plan's all-time board never does.
		day := claim.Board{Window: claim.WindowDay, Period: claim.PeriodOf(claim.WindowDay, today)}
		expires := claim.DefaultRetention.Until(day).Add(time.Hour)
		for _, c := range []struct {
			board   claim.Board
			expires time.Time
		}{{day, expires}, {claim.Board{Window: claim.WindowAll, PlanGroup: "G1"}, time.Time{}}} {
			for i := range keys.ShardCount() {
				k := keys.Shard(i).Board(c.board.Key())
				ttl, err := client.PTTL(ctx, k).Result()
				require.NoError(t, err)
				if ttl == -2*time.Nanosecond || ttl == -2*time.Millisecond { // no such key in this shard
					continue
				}
				if c.expires.IsZero() {
					require.Equal(t, time.Duration(-1), ttl, "%s never expires", k)
					continue
				}
				require.InDelta(t, time.Until(c.expires).Seconds(), ttl.Seconds(), 60, "%s", k)
			}
		}
	})
}

// A board past its retention is answered by Postgres, counted as such; a
// board Redis keeps is answered by Redis.
func TestFallbackReadsBoardsPastRetentionFromPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := testenv.MustStore(t)
	client, prefix := testenv.MustSharedRedis(t)
	r := rank.NewRedis(client, rank.Keys{Prefix: prefix}).
		Keeping(claim.Retention{claim.WindowDay: 2, claim.WindowWeek: 1, claim.WindowMonth: 1, claim.WindowYear: 1})
	_, err := newReconciler(st, r, 50).RunOnce(ctx, rank.Auto)
	require.NoError(t, err)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for i, date := range []time.Time{today, today.AddDate(0, 0, -1), today.AddDate(0, 0, -2)} {
		c := datedClaim([]string{fmt.Sprintf("12000000%02d", i)}, []time.Time{date}, []string{"G"})
		require.NoError(t, insertClaim(st, r, c))
	}
	metrics := rank.NewMetrics(prometheus.NewRegistry())
	fb := rank.NewFallback(r, st, rank.FallbackConfig{RedisTimeout: 5 * time.Second}, metrics, nil)
	for back, want := range []claim.Source{claim.SourceRedis, claim.SourceRedis, claim.SourcePostgres} {
		b := claim.Board{Window: claim.WindowDay, Period: claim.PeriodOf(claim.WindowDay, today.AddDate(0, 0, -back))}
		top, source, err := fb.BoardTop(ctx, b, 0, 10)
		require.NoError(t, err)
		require.Equal(t, want, source, "%d days back", back)
		require.Len(t, top, 1)
		st, source, err := fb.BoardRank(ctx, b, top[0].ProviderNPI)
		require.NoError(t, err)
		require.Equal(t, want, source)
		require.Equal(t, int64(1), st.Rank)
	}
}
