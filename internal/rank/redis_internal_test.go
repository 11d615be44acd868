package rank

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

func TestVersionDigits(t *testing.T) {
	for providers, want := range map[int64]int{
		0: 1, 100: 1, 1_200: 1, 1_201: 2, 10_000: 2, 1_000_000: 4, 1_010_000: 4, 1_200_001: 5, 10_000_000: 5, 1e12: 9,
	} {
		require.Equal(t, want, versionDigits(providers), "%d providers", providers)
	}
}

// Dropping old versions keeps the live generation's and the running
// build's hashes and deletes every other: a dead build's, generation "0"
// once a rebuild has set a generation, and the single hash of before.
func TestDropOldVersions(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.MustSharedRedis(t)
	r := NewRedis(client, Keys{Prefix: prefix})
	ctx := context.Background()
	require.NoError(t, client.Set(ctx, r.keys.Generation(), "live/1", 0).Err())
	token, err := r.beginBuild(ctx, 10)
	require.NoError(t, err)
	for _, gen := range []string{"live", token, "dead", "0"} {
		require.NoError(t, client.HSet(ctx, r.keys.VersionsPrefix()+gen+":5", "1000000005", 1).Err())
	}
	require.NoError(t, client.HSet(ctx, r.keys.legacyVersions()[0], "1000000005", 1).Err())

	require.NoError(t, r.dropOldVersions(ctx))
	var left []string
	iter := client.Scan(ctx, 0, r.keys.Ranking()+":*", 100).Iterator()
	for iter.Next(ctx) {
		if key := iter.Val(); strings.HasPrefix(key, r.keys.VersionsPrefix()) || key == r.keys.legacyVersions()[0] {
			left = append(left, key)
		}
	}
	require.NoError(t, iter.Err())
	require.ElementsMatch(t, []string{r.keys.VersionsPrefix() + "live:5", r.keys.VersionsPrefix() + token + ":5"}, left)
}
