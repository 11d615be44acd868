// Package rank keeps the live ranking of providers by total net fee in a Redis
// sorted set, answers top-N from it, falls back to Postgres when Redis cannot
// answer, and reconciles the set with the Postgres totals, the truth.
//
// This package is the one place that owns Redis keys and scripts.
package rank

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/claim"
)

// ErrIncomplete means the Redis set cannot be trusted to hold every provider:
// Redis lost it (a restart) and no rebuild has finished since.
var ErrIncomplete = errors.New("redis ranking is incomplete")

// Keys names every Redis key the ranking uses, under one prefix.
type Keys struct{ Prefix string }

// Ranking is the sorted set: member provider NPI, score total net fee in cents.
func (k Keys) Ranking() string { return k.Prefix + "rank:providers" }

// Versions is a hash, provider NPI -> version of the total the set holds.
func (k Keys) Versions() string { return k.Prefix + "rank:providers:versions" }

// Complete exists only while the set is known to hold every provider: a
// rebuild sets it to the epoch of the database it read; Redis losing its
// data loses it too.
func (k Keys) Complete() string { return k.Prefix + "rank:providers:complete" }

// BuildRanking and BuildVersions are the set and hash a rebuild fills aside
// before swapping them in.
func (k Keys) BuildRanking() string  { return k.Prefix + "rank:providers:build" }
func (k Keys) BuildVersions() string { return k.Prefix + "rank:providers:build:versions" }

// RateLimit is the rate-limiter's key for one client of one route.
func (k Keys) RateLimit(route, client string) string {
	return k.Prefix + "ratelimit:" + route + ":" + client
}

// buildingField marks a build hash as in progress; the build expires on its
// own after buildTTL if the process building it dies.
const (
	buildingField = "__building__"
	buildTTL      = 10 * time.Minute
)

// applyScript sets provider totals, each only when its version is at least
// the version Redis holds, so writes are safe to repeat and to reorder: an
// older total never overwrites a newer one. While a rebuild is in progress
// (KEYS[4] exists) every write lands in the build set too, so the rebuild
// cannot miss a total committed after it read its snapshot.
//
// KEYS[1] ranking zset, KEYS[2] versions hash,
// KEYS[3] build zset,   KEYS[4] build versions hash.
// ARGV    triples: provider NPI, total in cents, version.
// Returns {changed, drift}: how many providers' score or version changed in
// KEYS[1], and the sum of |old score - new score| over them, in cents (a
// missing member counts its whole new score).
//
// Scores and versions are written from the ARGV strings, never from Lua
// numbers, which Lua would format with only 14 significant digits.
var applyScript = redis.NewScript(`
local function apply(zkey, vkey, npi, cents, version)
  local held = tonumber(redis.call('HGET', vkey, npi))
  if held and held > tonumber(version) then return 0, 0 end
  local score = tonumber(redis.call('ZSCORE', zkey, npi))
  if held == tonumber(version) and score == tonumber(cents) then return 0, 0 end
  redis.call('ZADD', zkey, cents, npi)
  redis.call('HSET', vkey, npi, version)
  return 1, math.abs(tonumber(cents) - (score or 0))
end
local building = redis.call('EXISTS', KEYS[4]) == 1
local changed, drift = 0, 0
for i = 1, #ARGV, 3 do
  local npi, cents, version = ARGV[i], ARGV[i+1], ARGV[i+2]
  local c, d = apply(KEYS[1], KEYS[2], npi, cents, version)
  changed, drift = changed + c, drift + d
  if building then apply(KEYS[3], KEYS[4], npi, cents, version) end
end
return {changed, drift}
`)

// Redis is the ranking as kept in Redis.
type Redis struct {
	client redis.UniversalClient
	keys   Keys
	epoch  atomic.Pointer[string] // the database's ranking epoch, once known
}

// ExpectEpoch tells the ranking which database it serves: a set rebuilt from
// another one (since recreated) is then not answered from.
func (r *Redis) ExpectEpoch(epoch string) { r.epoch.Store(&epoch) }

// NewRedis returns the ranking kept in client under the keys' prefix.
func NewRedis(client redis.UniversalClient, keys Keys) *Redis {
	return &Redis{client: client, keys: keys}
}

// Applied says what a write of totals changed in the ranking.
type Applied struct {
	Changed int         // providers whose score or version moved
	Drift   claim.Cents // sum of how far the changed scores were from the totals
}

// Apply records committed provider totals. Repeating it, or applying totals
// out of order, leaves the same result. It returns how many providers changed.
func (r *Redis) Apply(ctx context.Context, totals []claim.ProviderTotal) (int, error) {
	a, err := r.apply(ctx, r.liveKeys(), totals)
	return a.Changed, err
}

func (r *Redis) liveKeys() []string {
	k := r.keys
	return []string{k.Ranking(), k.Versions(), k.BuildRanking(), k.BuildVersions()}
}

// buildScript adds totals to the build set: the rule of applyScript (a total
// is written unless the set holds a newer version), with one HMGET, one ZADD
// and one HSET for the whole batch instead of four calls per provider.
//
// KEYS[1] build zset, KEYS[2] build versions hash.
// ARGV    triples: provider NPI, total in cents, version (at most 2000).
// Returns how many providers were written.
var buildScript = redis.NewScript(`
local n = #ARGV / 3
local npis = {}
for i = 1, n do npis[i] = ARGV[3*i-2] end
local held = redis.call('HMGET', KEYS[2], unpack(npis))
local z, h = {}, {}
for i = 1, n do
  local v = tonumber(held[i])
  if not v or v <= tonumber(ARGV[3*i]) then
    z[#z+1] = ARGV[3*i-1]; z[#z+1] = ARGV[3*i-2]
    h[#h+1] = ARGV[3*i-2]; h[#h+1] = ARGV[3*i]
  end
end
if #z > 0 then
  redis.call('ZADD', KEYS[1], unpack(z))
  redis.call('HSET', KEYS[2], unpack(h))
end
return #z / 2
`)

// maxBuildBatch bounds the totals of one buildScript call: Lua's unpack
// takes at most about 8000 values.
const maxBuildBatch = 2000

// buildBatch adds totals to the build set, and in the same round trip sums
// how far the live set's scores are from them (a missing member counts its
// whole total): what the rebuild is about to repair.
func (r *Redis) buildBatch(ctx context.Context, totals []claim.ProviderTotal) (claim.Cents, error) {
	var drift claim.Cents
	for len(totals) > 0 {
		batch := totals[:min(len(totals), maxBuildBatch)]
		totals = totals[len(batch):]
		members := make([]string, len(batch))
		args := make([]any, 0, 3*len(batch))
		for i, t := range batch {
			members[i] = t.ProviderNPI
			args = append(args, t.ProviderNPI, int64(t.NetFee), t.Version)
		}
		var scores *redis.FloatSliceCmd
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			scores = p.ZMScore(ctx, r.keys.Ranking(), members...)
			buildScript.Eval(ctx, p, []string{r.keys.BuildRanking(), r.keys.BuildVersions()}, args...)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("add totals to the ranking rebuild: %w", err)
		}
		for i, t := range batch {
			d := t.NetFee - claim.Cents(scores.Val()[i]) // ZMSCORE gives 0 for a missing member
			drift += max(d, -d)
		}
	}
	return drift, nil
}

func (r *Redis) apply(ctx context.Context, keys []string, totals []claim.ProviderTotal) (Applied, error) {
	if len(totals) == 0 {
		return Applied{}, nil
	}
	args := make([]any, 0, 3*len(totals))
	for _, t := range totals {
		args = append(args, t.ProviderNPI, int64(t.NetFee), t.Version)
	}
	res, err := applyScript.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return Applied{}, fmt.Errorf("apply totals to redis: %w", err)
	}
	return Applied{Changed: int(res[0]), Drift: claim.Cents(res[1])}, nil
}

// TopProviders returns the limit providers with the highest totals, as ZREVRANGE
// orders them. It fails with ErrIncomplete when the set is not known complete.
func (r *Redis) TopProviders(ctx context.Context, limit int) ([]claim.ProviderTotal, error) {
	var (
		complete *redis.StringCmd
		top      *redis.ZSliceCmd
	)
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		complete = p.Get(ctx, r.keys.Complete())
		top = p.ZRevRangeWithScores(ctx, r.keys.Ranking(), 0, int64(limit-1))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read top providers from redis: %w", err)
	}
	if err := top.Err(); err != nil {
		return nil, fmt.Errorf("read top providers from redis: %w", err)
	}
	builtFrom := complete.Val()
	if want := r.epoch.Load(); builtFrom == "" || (want != nil && *want != builtFrom) {
		return nil, ErrIncomplete
	}
	out := make([]claim.ProviderTotal, 0, len(top.Val()))
	for _, z := range top.Val() {
		npi, _ := z.Member.(string)
		out = append(out, claim.ProviderTotal{ProviderNPI: npi, NetFee: claim.Cents(z.Score)})
	}
	return out, nil
}

// completeEpoch returns the epoch of the database the set was last rebuilt
// from, "" when the set is not known complete.
func (r *Redis) completeEpoch(ctx context.Context) (string, error) {
	epoch, err := r.client.Get(ctx, r.keys.Complete()).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return epoch, err
}

// beginBuild starts a rebuild aside: from here on every Apply also writes to
// the build set. It must be called before the snapshot of the truth is read.
// The returned token names this build; only its owner can finish it.
func (r *Redis) beginBuild(ctx context.Context) (string, error) {
	token := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(rand.Uint64(), 36)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.keys.BuildRanking(), r.keys.BuildVersions())
		p.HSet(ctx, r.keys.BuildVersions(), buildingField, token)
		p.Expire(ctx, r.keys.BuildVersions(), buildTTL)
		// The build set exists from the start so it can carry a TTL too.
		p.ZAdd(ctx, r.keys.BuildRanking(), redis.Z{Member: buildingField, Score: 0})
		p.Expire(ctx, r.keys.BuildRanking(), buildTTL)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("begin ranking rebuild: %w", err)
	}
	return token, nil
}

// finishScript swaps a finished build in for the ranking, atomically, and
// marks the ranking complete. Readers see the old set or the new one, never a
// half-filled one.
//
// KEYS[1] ranking zset, KEYS[2] versions hash, KEYS[3] build zset,
// KEYS[4] build versions hash, KEYS[5] completeness marker.
// ARGV[1] the build-in-progress field, ARGV[2] this build's token,
// ARGV[3] the marker's value: the epoch of the database it was built from.
// Returns 1, or an error when the build is not this one (it expired, was
// aborted, or another rebuild replaced it).
var finishScript = redis.NewScript(`
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('ranking build is not ours: expired, aborted or replaced')
end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
-- UNLINK frees the old set in the background: DEL of a million members
-- would block Redis, and every lookup, for longer than a second.
redis.call('UNLINK', KEYS[1], KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[1])
  redis.call('PERSIST', KEYS[1])
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
redis.call('SET', KEYS[5], ARGV[3])
return 1
`)

// finishBuild swaps the build set in for the ranking (see finishScript).
func (r *Redis) finishBuild(ctx context.Context, token, epoch string) error {
	k := r.keys
	err := finishScript.Run(ctx, r.client,
		[]string{k.Ranking(), k.Versions(), k.BuildRanking(), k.BuildVersions(), k.Complete()},
		buildingField, token, epoch).Err()
	if err != nil {
		return fmt.Errorf("swap in rebuilt ranking: %w", err)
	}
	return nil
}

// abortScript drops a build that could not finish, if it is still ours.
//
// KEYS[1] build zset, KEYS[2] build versions hash.
// ARGV[1] the build-in-progress field, ARGV[2] this build's token.
// Returns 1 when it dropped the build, 0 when the build was not ours.
var abortScript = redis.NewScript(`
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2])
return 1
`)

// abortBuild drops this build, leaving any other build alone.
func (r *Redis) abortBuild(ctx context.Context, token string) {
	abortScript.Run(ctx, r.client, []string{r.keys.BuildRanking(), r.keys.BuildVersions()}, buildingField, token)
}
