package loadkit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/rank"
)

// RankingScores reads the ranking's scores (see rank.Keys.Ranking) of the
// given providers, chunked; a provider without a score is left out.
func RankingScores(ctx context.Context, rdb redis.Cmdable, keys rank.Keys, npis []string) (map[string]int64, error) {
	out := map[string]int64{}
	for chunk := range slices.Chunk(npis, 1000) {
		scores, err := rdb.ZMScore(ctx, keys.Ranking(), chunk...).Result()
		if err != nil {
			return nil, fmt.Errorf("read redis ranking: %w", err)
		}
		for i, s := range scores {
			if err := wholeCents(chunk[i], s); err != nil {
				return nil, err
			}
			if s != 0 {
				out[chunk[i]] = int64(s)
			}
		}
	}
	return out, nil
}

// Ranking reads the whole ranking (see rank.Keys.Ranking): provider NPI to
// score in cents.
func Ranking(ctx context.Context, rdb redis.Cmdable, keys rank.Keys) (map[string]int64, error) {
	zs, err := rdb.ZRangeWithScores(ctx, keys.Ranking(), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(zs))
	for _, z := range zs {
		npi, _ := z.Member.(string)
		if err := wholeCents(npi, z.Score); err != nil {
			return nil, err
		}
		out[npi] = int64(z.Score)
	}
	return out, nil
}

func wholeCents(npi string, score float64) error {
	if score != math.Trunc(score) {
		return fmt.Errorf("redis score of %s is %v, not whole cents", npi, score)
	}
	return nil
}

// Querier is what the Postgres readers need: a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ProviderTotals reads provider_totals: of the given providers (chunked), or
// of every provider when npis is nil.
func ProviderTotals(ctx context.Context, q Querier, npis []string) (map[string]int64, error) {
	out := map[string]int64{}
	if npis == nil {
		return out, scanTotals(ctx, q, out, `SELECT provider_npi, total_net_fee_cents FROM provider_totals`)
	}
	for chunk := range slices.Chunk(npis, 10000) {
		if err := scanTotals(ctx, q, out,
			`SELECT provider_npi, total_net_fee_cents FROM provider_totals WHERE provider_npi = ANY($1)`, chunk); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LineSums is SUM(claim_lines.net_fee_cents) per provider: what
// provider_totals must hold.
func LineSums(ctx context.Context, q Querier) (map[string]int64, error) {
	out := map[string]int64{}
	return out, scanTotals(ctx, q, out, `SELECT provider_npi, SUM(net_fee_cents)::bigint FROM claim_lines GROUP BY provider_npi`)
}

// scanTotals adds the (NPI, cents) rows of sql to into.
func scanTotals(ctx context.Context, q Querier, into map[string]int64, sql string, args ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("read provider totals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var npi string
		var cents int64
		if err := rows.Scan(&npi, &cents); err != nil {
			return fmt.Errorf("read provider totals: %w", err)
		}
		into[npi] = cents
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read provider totals: %w", err)
	}
	return nil
}

// RankVersions reads the version of every provider's total the live ranking
// holds (see rank.Keys.Generation).
func RankVersions(ctx context.Context, rdb redis.Cmdable, keys rank.Keys) (map[string]int64, error) {
	v, err := rdb.Get(ctx, keys.Generation()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	gen, _, _ := rank.ParseGeneration(v)
	out := map[string]int64{}
	iter := rdb.Scan(ctx, 0, keys.VersionsPrefix()+gen+":*", 1000).Iterator()
	for iter.Next(ctx) {
		fields, err := rdb.HGetAll(ctx, iter.Val()).Result()
		if err != nil {
			return nil, err
		}
		for npi, s := range fields {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("version of %s: %w", npi, err)
			}
			out[npi] = n
		}
	}
	return out, iter.Err()
}
