package rank_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// benchSize reads a size from the environment, for BENCH_LINES=5000000 runs.
func benchSize(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// Claims of four lines each, over BENCH_PROVIDERS providers, generated inside
// Postgres; provider_totals is filled from the lines, as ingestion leaves it.
var seedSQL = []string{`
INSERT INTO claims (id, received_at, net_fee_cents, line_count)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid, now(), 0, 4
FROM generate_series(1, $1::int / 4) g`, `
INSERT INTO claim_lines (claim_id, line_no, service_date, submitted_procedure, plan_group, subscriber,
    provider_npi, provider_fees_cents, allowed_fees_cents, member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid, l, date '2024-01-01', 'D0180', 'GRP-1', 'S',
       (1000000000 + ((g::bigint * 4 + l) * 7919) % $2::int)::text,
       f, 0, 0, 0, f
FROM generate_series(1, $1::int / 4) g, generate_series(0, 3) l,
     LATERAL (SELECT ((g::bigint * 37 + l * 101) % 100000)::bigint AS f) fee`, `
INSERT INTO provider_totals (provider_npi, total_net_fee_cents, version, claims)
SELECT provider_npi, sum(net_fee_cents), 1, count(DISTINCT claim_id) FROM claim_lines GROUP BY provider_npi`}

// What the old service ran for every lookup.
const groupBySQL = `
SELECT provider_npi, sum(net_fee_cents) AS total
FROM claim_lines GROUP BY provider_npi
ORDER BY total DESC, provider_npi DESC LIMIT 10`

// BenchmarkTopProviders compares, on the same data in one run, the three
// ways to answer top-10: the Redis sorted set, the Postgres fallback over the
// totals index, and the old service's GROUP BY over every claim line.
// `make bench` prints each as a ratio to the GROUP BY.
func BenchmarkTopProviders(b *testing.B) {
	lines, providers := benchSize("BENCH_LINES", 1_000_000), benchSize("BENCH_PROVIDERS", 100_000)
	ctx := context.Background()
	url := testenv.MustDatabase(b)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(b, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, seedSQL[0], lines)
	require.NoError(b, err)
	_, err = conn.Exec(ctx, seedSQL[1], lines, providers)
	require.NoError(b, err)
	_, err = conn.Exec(ctx, seedSQL[2])
	require.NoError(b, err)
	_, err = conn.Exec(ctx, "VACUUM ANALYZE")
	require.NoError(b, err)

	st, err := store.Open(ctx, url)
	require.NoError(b, err)
	defer st.Close()
	client, prefix := testenv.MustSharedRedis(b)
	redisRank := rank.NewRedis(client, rank.Keys{Prefix: prefix})
	metrics := rank.NewMetrics(prometheus.NewRegistry())
	res, err := rank.NewReconciler(st, redisRank, rank.ReconcilerConfig{}, metrics, nil).RunOnce(ctx, rank.Rebuild)
	require.NoError(b, err)
	b.Logf("%d claim lines over %d providers; full Redis rebuild of %d providers took %s",
		lines, providers, res.Providers, res.Duration)
	fallback := rank.NewFallback(redisRank, st, rank.FallbackConfig{}, metrics, nil)

	b.Run("redis_zrevrange", func(b *testing.B) {
		for b.Loop() {
			top, err := redisRank.TopProviders(ctx, 0, 10)
			if err != nil || len(top) != 10 {
				b.Fatal(err, len(top))
			}
		}
	})
	b.Run("fallback_decorator_redis", func(b *testing.B) {
		for b.Loop() {
			if _, src, err := fallback.TopProviders(ctx, 0, 10); err != nil || src != claim.SourceRedis {
				b.Fatal(err, src)
			}
		}
	})
	b.Run("postgres_totals_index", func(b *testing.B) {
		for b.Loop() {
			top, err := st.TopProviders(ctx, 0, 10)
			if err != nil || len(top) != 10 {
				b.Fatal(err, len(top))
			}
		}
	})
	b.Run("postgres_groupby_lines_baseline", func(b *testing.B) {
		for b.Loop() {
			rows, err := conn.Query(ctx, groupBySQL)
			if err != nil {
				b.Fatal(err)
			}
			rows.Close()
			if rows.Err() != nil {
				b.Fatal(rows.Err())
			}
		}
	})
}
