package loadkit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/rank"
)

// RankingScores reads the ranking's scores (see rank.ShardKeys.Ranking) of
// the given providers, chunked; a provider without a score is left out.
func RankingScores(ctx context.Context, rdb redis.UniversalClient, keys rank.Keys, npis []string) (map[string]int64, error) {
	out := map[string]int64{}
	byShard := make([][]string, keys.ShardCount())
	for _, npi := range npis {
		i := keys.ShardOf(npi)
		byShard[i] = append(byShard[i], npi)
	}
	for i, shard := range byShard {
		for chunk := range slices.Chunk(shard, 1000) {
			scores, err := rdb.ZMScore(ctx, keys.Shard(i).Ranking(), chunk...).Result()
			if err != nil {
				return nil, fmt.Errorf("read redis ranking: %w", err)
			}
			for j, s := range scores {
				if err := wholeCents(chunk[j], s); err != nil {
					return nil, err
				}
				if s != 0 {
					out[chunk[j]] = int64(s)
				}
			}
		}
	}
	return out, nil
}

// Ranking reads the whole ranking, every shard (see rank.ShardKeys.Ranking):
// provider NPI to score in cents. A provider in a shard not its own is an
// error.
func Ranking(ctx context.Context, rdb redis.UniversalClient, keys rank.Keys) (map[string]int64, error) {
	boards, err := BoardRankings(ctx, rdb, keys, []string{""})
	return boards[""], err
}

// BoardRankings reads boards (claim.Board.Key; "" the all-time one) whole from the ranking,
// every shard, in pipelined rounds: board to provider NPI to score in
// cents. A provider in a shard not its own is an error.
func BoardRankings(ctx context.Context, rdb redis.UniversalClient, keys rank.Keys, boards []string) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	for chunk := range slices.Chunk(boards, 500) {
		cmds := make([][]*redis.ZSliceCmd, len(chunk))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, board := range chunk {
				for i := range keys.ShardCount() {
					cmds[j] = append(cmds[j], p.ZRangeWithScores(ctx, keys.Shard(i).Board(board), 0, -1))
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read redis boards: %w", err)
		}
		for j, board := range chunk {
			out[board] = map[string]int64{}
			for i, cmd := range cmds[j] {
				for _, z := range cmd.Val() {
					npi, _ := z.Member.(string)
					if err := wholeCents(npi, z.Score); err != nil {
						return nil, err
					}
					if keys.ShardOf(npi) != i {
						return nil, fmt.Errorf("provider %s is in board %s shard %d, not its own %d", npi, board, i, keys.ShardOf(npi))
					}
					out[board][npi] = int64(z.Score)
				}
			}
		}
	}
	return out, nil
}

// ScanKeys lists the keys matching pattern: on every master of a cluster,
// or on the one server.
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var (
		mu  sync.Mutex
		out []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	if cluster, ok := rdb.(*redis.ClusterClient); ok {
		err := cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
		return out, err
	}
	return out, scan(ctx, rdb)
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

// LineSums is SUM(claim_lines.net_fee_cents) per provider, a reversed
// claim's lines counting 0: what provider_totals must hold.
func LineSums(ctx context.Context, q Querier) (map[string]int64, error) {
	out := map[string]int64{}
	return out, scanTotals(ctx, q, out, `SELECT l.provider_npi, SUM(CASE WHEN c.status = 'reversed' THEN 0 ELSE l.net_fee_cents END)::bigint
		FROM claim_lines l JOIN claims c ON c.id = l.claim_id GROUP BY l.provider_npi`)
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

// RankVersions reads the version of every provider's total the live
// all-time ranking holds, in every shard (see rank.ShardKeys.Generation).
func RankVersions(ctx context.Context, rdb redis.UniversalClient, keys rank.Keys) (map[string]int64, error) {
	return BoardVersions(ctx, rdb, keys, "")
}

// BoardVersions is RankVersions of the board of key board ("" the all-time
// one).
func BoardVersions(ctx context.Context, rdb redis.UniversalClient, keys rank.Keys, board string) (map[string]int64, error) {
	out := map[string]int64{}
	for i := range keys.ShardCount() {
		k := keys.Shard(i)
		v, err := rdb.Get(ctx, k.Generation()).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		gen, _, _ := rank.ParseGeneration(v)
		names, err := ScanKeys(ctx, rdb, k.VersionsPattern(gen))
		if err != nil {
			return nil, err
		}
		prefix := strings.TrimSuffix(k.VersionsPattern(gen), "*")
		for _, name := range names {
			rest := strings.TrimPrefix(name, prefix)
			if board != "" {
				if !strings.HasPrefix(rest, board+":") {
					continue
				}
				rest = rest[len(board)+1:]
			}
			if strings.Trim(rest, "0123456789") != "" {
				continue // another board's
			}
			fields, err := rdb.HGetAll(ctx, name).Result()
			if err != nil {
				return nil, err
			}
			for npi, s := range fields {
				version, _, _ := strings.Cut(s, ":") // "<version>:<claims>"
				n, err := strconv.ParseInt(version, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("version of %s: %w", npi, err)
				}
				out[npi] = n
			}
		}
	}
	return out, nil
}
