package rank

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/testenv"
)

func TestVersionDigits(t *testing.T) {
	for providers, want := range map[int64]int{
		0: 1, 100: 1, 1_200: 1, 1_201: 2, 10_000: 2, 1_000_000: 4, 1_010_000: 4, 1_200_001: 5, 10_000_000: 5, 1e12: 9,
	} {
		require.Equal(t, want, versionDigits(providers), "%d providers", providers)
	}
}

// A provider's shard is a stable hash of its NPI: the same in every
// instance and release (a change would strand every total in the wrong
// set), and spread over the shards.
func TestShardOfIsStableAndSpread(t *testing.T) {
	keys := Keys{Prefix: "p:", Shards: 16}
	require.Equal(t, 0, Keys{Prefix: "p:"}.ShardOf("1234567890"))
	// FNV-1a 32 mod 16, computed apart (Python).
	require.Equal(t, []int{7, 10, 13, 8}, []int{keys.ShardOf("1000000001"), keys.ShardOf("1000000002"),
		keys.ShardOf("1000000003"), keys.ShardOf("1000000004")})
	counts := make([]int, 16)
	for i := range 16_000 {
		counts[keys.ShardOf(fmt.Sprintf("1%09d", i))]++
	}
	for i, n := range counts {
		require.InDelta(t, 1000, n, 150, "shard %d", i)
	}
	require.Equal(t, "p:rank{3/16}:providers", keys.Shard(3).Ranking())
	require.Equal(t, "p:rank{3/16}:v:g:0005", keys.Shard(3).Versions("g", 4, "1000000005"))
}

// Dropping old versions keeps the live generation's and the running
// build's hashes and deletes every other generation's: a dead build's,
// generation "0" once a rebuild has set a generation, and the keys of the
// layout before shards.
func TestDropOldVersions(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.MustSharedRedis(t)
	r := NewRedis(client, Keys{Prefix: prefix})
	k := r.shards[0].keys
	ctx := context.Background()
	require.NoError(t, client.Set(ctx, k.Generation(), "live/1", 0).Err())
	b, err := r.beginBuild(ctx, map[string]int64{"": 10})
	require.NoError(t, err)
	require.NoError(t, client.SAdd(ctx, k.Generations(), "dead/2", NoGeneration).Err())
	hashes := map[string]string{
		"live": k.Versions("live", 1, "1000000005"), "build": k.Versions(b.token, 1, "1000000005"),
		"dead": k.Versions("dead", 2, "1000000005"), "0": k.Versions("0", 1, "1000000005"),
		"legacy": prefix + "rank:providers:v:x:5",
	}
	for _, h := range hashes {
		require.NoError(t, client.HSet(ctx, h, "1000000005", 1).Err())
	}

	require.NoError(t, r.dropOldVersions(ctx, nil))
	for name, h := range hashes {
		n, err := client.Exists(ctx, h).Result()
		require.NoError(t, err)
		require.Equal(t, int64(map[string]int{"live": 1, "build": 1}[name]), n, name)
	}
	gens, err := client.SMembers(ctx, k.Generations()).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{b.gens[0]}, gens, "dropped generations leave the set")
}

// Writes before the first rebuild go to NoGeneration's hashes and record
// it, so that the rebuild drops them; once a generation is live they no
// longer do.
func TestWritesWithoutGenerationRecordIt(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.MustSharedRedis(t)
	r := NewRedis(client, Keys{Prefix: prefix})
	k := r.shards[0].keys
	ctx := context.Background()
	_, err := r.Apply(ctx, []claim.ProviderTotal{{ProviderNPI: "1000000005", NetFee: 5, Version: 1, Claims: 1}})
	require.NoError(t, err)
	gens, err := client.SMembers(ctx, k.Generations()).Result()
	require.NoError(t, err)
	require.Equal(t, []string{NoGeneration}, gens)
	n, err := client.Exists(ctx, k.Versions("0", 1, "1000000005")).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	require.NoError(t, client.Del(ctx, k.Generations()).Err())
	require.NoError(t, client.Set(ctx, k.Generation(), "live/1", 0).Err())
	_, err = r.Apply(ctx, []claim.ProviderTotal{{ProviderNPI: "1000000005", NetFee: 6, Version: 2, Claims: 1}})
	require.NoError(t, err)
	n, err = client.Exists(ctx, k.Generations()).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// A rebuild of more boards than one script swaps (swapChunk): every board's
// set is the rebuilt one, no build set is left, and finishing again (a call
// go-redis retried after its first run finished) changes nothing.
func TestRebuildSwapsManyBoards(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.MustSharedRedis(t)
	r := NewRedis(client, Keys{Prefix: prefix})
	k := r.shards[0].keys
	ctx := context.Background()
	boards := 2*swapChunk + 7
	totals := func(version int64) []claim.ProviderTotal {
		var out []claim.ProviderTotal
		for i := range boards {
			out = append(out, claim.ProviderTotal{Board: fmt.Sprintf("a|g:P%d", i), ProviderNPI: "1000000005",
				NetFee: claim.Cents(version*1000 + int64(i)), Version: version, Claims: 1})
		}
		return out
	}
	_, err := r.Apply(ctx, totals(1))
	require.NoError(t, err)
	b, err := r.beginBuild(ctx, map[string]int64{"": 1, "a|g:P0": 1})
	require.NoError(t, err)
	_, err = r.buildBatch(ctx, b, totals(2))
	require.NoError(t, err)
	swapped, err := r.finishBuild(ctx, b, "e")
	require.NoError(t, err)
	require.Len(t, swapped, boards)
	_, err = r.finishBuild(ctx, b, "e")
	require.NoError(t, err, "finishing again is a no-op")

	r.ExpectEpoch("e")
	for _, i := range []int{0, swapChunk, boards - 1} {
		top, err := r.BoardTop(ctx, claim.Board{Window: claim.WindowAll, PlanGroup: fmt.Sprintf("P%d", i)}, 0, 10)
		require.NoError(t, err)
		require.Equal(t, []claim.ProviderTotal{{ProviderNPI: "1000000005", NetFee: claim.Cents(2000 + i)}}, top)
	}
	left, _, err := client.Scan(ctx, 0, k.BuildBoard("*"), 100_000).Result()
	require.NoError(t, err)
	require.Empty(t, left, "no board's build set is left")
	n, err := client.Exists(ctx, k.BuildBoards(), k.BuildGeneration(), k.BuildRanking()).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}
