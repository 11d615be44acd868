// Package rank keeps the live ranking of providers by total net fee in a Redis
// sorted set, answers top-N from it, falls back to Postgres when Redis cannot
// answer, and reconciles the set with the Postgres totals, the truth.
//
// This package is the one place that names Redis keys (keys.go) and holds
// the ranking's scripts.
package rank

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
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

// buildingMember keeps the build set in existence from the start, so that it
// can carry a TTL: a build whose process died expires after buildTTL.
const (
	buildingMember = "__building__"
	buildTTL       = 10 * time.Minute
)

// versionsLua finds a generation's versions: gen(key) reads a generation key
// and returns the prefix of its hashes and its digits, or nil when absent.
const versionsLua = `
local function gen(key, vprefix)
  local v = redis.call('GET', key)
  if not v then return nil end
  local g, d = string.match(v, '^(.*)/(%d+)$')
  return vprefix .. g .. ':', tonumber(d)
end
local function vkey(prefix, digits, npi) return prefix .. string.sub(npi, -digits) end
`

// applyScript sets provider totals, each only when its version is at least
// the version Redis holds, so writes are safe to repeat and to reorder: an
// older total never overwrites a newer one. While a rebuild is in progress
// (KEYS[4] exists) every write lands in the build set too, so the rebuild
// cannot miss a total committed after it read its snapshot.
//
// KEYS[1] ranking zset, KEYS[2] generation, KEYS[3] build zset,
// KEYS[4] build generation.
// ARGV[1] the versions prefix, ARGV[2] "1" to measure drift (reconciliation)
// or "0" (a commit's totals), then triples: provider NPI, total in cents,
// version.
// Returns {changed, drift}: how many providers' score or version changed in
// KEYS[1], and, when measured, the sum of |old score - new score| over them,
// in cents, each rounded up (a missing member counts its whole new score; a
// score off by a fraction of a cent counts one). Without drift a newer
// version is written without reading the old score: three calls per
// provider instead of four, on the path every claim takes.
//
// Totals stay within claim.MaxTotal (2^53-1 cents), where a double holds
// every integer exactly: tonumber of a total and a score compare exactly,
// so any score that is not exactly its total is found and rewritten.
// Scores and versions are written from the ARGV strings, never from Lua
// numbers, which Lua would format with only 14 significant digits. The
// versions hashes are named here, not in KEYS: the ranking needs a
// standalone Redis (or one cluster slot per prefix), not a cluster.
var applyScript = redis.NewScript(versionsLua + `
local measure = ARGV[2] == '1'
local function apply(zkey, vkey, npi, cents, version)
  local held = tonumber(redis.call('HGET', vkey, npi))
  if held and held > tonumber(version) then return 0, 0 end
  local score
  if measure or held == tonumber(version) then
    score = tonumber(redis.call('ZSCORE', zkey, npi))
    if held == tonumber(version) and score == tonumber(cents) then return 0, 0 end
  end
  redis.call('ZADD', zkey, cents, npi)
  redis.call('HSET', vkey, npi, version)
  if not measure then return 1, 0 end
  return 1, math.ceil(math.abs(tonumber(cents) - (score or 0)))
end
local live, digits = gen(KEYS[2], ARGV[1])
if not live then live, digits = ARGV[1] .. '0:', 4 end
local build, bdigits = gen(KEYS[4], ARGV[1])
local changed, drift = 0, 0
for i = 3, #ARGV, 3 do
  local npi, cents, version = ARGV[i], ARGV[i+1], ARGV[i+2]
  local c, d = apply(KEYS[1], vkey(live, digits, npi), npi, cents, version)
  changed, drift = changed + c, drift + d
  if build then apply(KEYS[3], vkey(build, bdigits, npi), npi, cents, version) end
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
	a, err := r.apply(ctx, r.liveKeys(), totals, false)
	return a.Changed, err
}

func (r *Redis) liveKeys() []string {
	k := r.keys
	return []string{k.Ranking(), k.Generation(), k.BuildRanking(), k.BuildGeneration()}
}

// buildScript adds totals to the build set: the rule of applyScript (a total
// is written unless the set holds a newer version), with one call per
// provider in the usual case (HSETNX: no live write got there first) and one
// ZADD for the whole batch.
//
// KEYS[1] build zset, KEYS[2] build generation.
// ARGV[1] the versions prefix, ARGV[2] this build's token, then triples:
// provider NPI, total in cents, version (at most 2000 triples).
// Returns how many providers were written, or an error when the build is not
// this one.
var buildScript = redis.NewScript(versionsLua + `
local build, digits = gen(KEYS[2], ARGV[1])
if build ~= ARGV[1] .. ARGV[2] .. ':' then
  return redis.error_reply('ranking build is not ours: expired, aborted or replaced')
end
local z = {}
for i = 3, #ARGV, 3 do
  local npi, cents, version = ARGV[i], ARGV[i+1], ARGV[i+2]
  local key = vkey(build, digits, npi)
  local write = redis.call('HSETNX', key, npi, version) == 1
  if not write then
    local held = tonumber(redis.call('HGET', key, npi))
    if held <= tonumber(version) then
      redis.call('HSET', key, npi, version)
      write = true
    end
  end
  if write then z[#z+1] = cents; z[#z+1] = npi end
end
if #z > 0 then redis.call('ZADD', KEYS[1], unpack(z)) end
return #z / 2
`)

// maxBuildBatch bounds the totals of one buildScript call: Lua's unpack
// takes at most about 8000 values.
const maxBuildBatch = 2000

// buildBatch adds totals to build token's set, and in the same round trip sums
// how far the live set's scores are from them (a missing member counts its
// whole total): what the rebuild is about to repair.
func (r *Redis) buildBatch(ctx context.Context, token string, totals []claim.ProviderTotal) (claim.Cents, error) {
	var drift claim.Cents
	for len(totals) > 0 {
		batch := totals[:min(len(totals), maxBuildBatch)]
		totals = totals[len(batch):]
		members := make([]string, len(batch))
		args := make([]any, 0, 2+3*len(batch))
		args = append(args, r.keys.VersionsPrefix(), token)
		for i, t := range batch {
			members[i] = t.ProviderNPI
			args = append(args, t.ProviderNPI, int64(t.NetFee), t.Version)
		}
		var scores *redis.FloatSliceCmd
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			scores = p.ZMScore(ctx, r.keys.Ranking(), members...)
			buildScript.Eval(ctx, p, []string{r.keys.BuildRanking(), r.keys.BuildGeneration()}, args...)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("add totals to the ranking rebuild: %w", err)
		}
		for i, t := range batch {
			// ZMSCORE gives 0 for a missing member. Both are exact doubles
			// within claim.MaxTotal; a fraction of a cent off counts one.
			drift += claim.Cents(math.Ceil(math.Abs(float64(t.NetFee) - scores.Val()[i])))
		}
	}
	return drift, nil
}

// apply writes totals with applyScript; measureDrift also sums how far the
// scores it changed were from them.
func (r *Redis) apply(ctx context.Context, keys []string, totals []claim.ProviderTotal, measureDrift bool) (Applied, error) {
	if len(totals) == 0 {
		return Applied{}, nil
	}
	measure := "0"
	if measureDrift {
		measure = "1"
	}
	args := make([]any, 0, 2+3*len(totals))
	args = append(args, r.keys.VersionsPrefix(), measure)
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
// The returned token names this build; only its owner can finish it. Its
// versions hashes use enough NPI digits for about 100 of providers each.
func (r *Redis) beginBuild(ctx context.Context, providers int64) (string, error) {
	token := strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatUint(rand.Uint64()%1e6, 36)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Unlink(ctx, r.keys.BuildRanking())
		p.ZAdd(ctx, r.keys.BuildRanking(), redis.Z{Member: buildingMember, Score: 0})
		p.Expire(ctx, r.keys.BuildRanking(), buildTTL)
		p.Set(ctx, r.keys.BuildGeneration(), token+"/"+strconv.Itoa(versionDigits(providers)), buildTTL)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("begin ranking rebuild: %w", err)
	}
	return token, nil
}

// versionDigits is how many trailing NPI digits name a versions hash: the
// fewest that leave at most about 120 providers in each (Redis turns a hash
// of more than 128 fields, by default, from a listpack into a hash table).
func versionDigits(providers int64) int {
	d, buckets := 1, int64(10)
	for buckets*120 < providers && d < 9 {
		d, buckets = d+1, buckets*10
	}
	return d
}

// versionsOutgrown reports whether the live versions hashes hold, on
// average, more providers than a listpack does (or are of the layout before
// generations): then a rebuild sizes them anew.
func (r *Redis) versionsOutgrown(ctx context.Context, providers int64) (bool, error) {
	_, digits, err := r.liveGeneration(ctx)
	if errors.Is(err, errNoGeneration) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	buckets := int64(1)
	for range digits {
		buckets *= 10
	}
	return providers > 128*buckets, nil
}

// errNoGeneration means no rebuild has set the live generation (or its value
// is not one): writes then use generation "0" with 4 digits.
var errNoGeneration = errors.New("no ranking versions generation")

// liveGeneration reads the live generation key: the generation's name and
// how many NPI digits name its hashes.
func (r *Redis) liveGeneration(ctx context.Context) (gen string, digits int, err error) {
	v, err := r.client.Get(ctx, r.keys.Generation()).Result()
	if errors.Is(err, redis.Nil) {
		return "0", 4, errNoGeneration
	}
	if err != nil {
		return "", 0, err
	}
	gen, digits, ok := ParseGeneration(v)
	if !ok {
		return gen, digits, errNoGeneration
	}
	return gen, digits, nil
}

// finishScript swaps a finished build in for the ranking, atomically, and
// marks the ranking complete. Readers see the old set or the new one, never a
// half-filled one.
//
// KEYS[1] ranking zset, KEYS[2] generation, KEYS[3] build zset,
// KEYS[4] build generation, KEYS[5] completeness marker.
// ARGV[1] the building member, ARGV[2] this build's token,
// ARGV[3] the marker's value: the epoch of the database it was built from.
// Returns 1, or an error when the build is not this one (it expired, was
// aborted, or another rebuild replaced it).
var finishScript = redis.NewScript(`
local b = redis.call('GET', KEYS[4])
if not b or string.match(b, '^(.*)/') ~= ARGV[2] then
  return redis.error_reply('ranking build is not ours: expired, aborted or replaced')
end
redis.call('ZREM', KEYS[3], ARGV[1])
-- UNLINK frees the old set in the background: DEL of a million members
-- would block Redis, and every lookup, for longer than a second.
redis.call('UNLINK', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[1])
  redis.call('PERSIST', KEYS[1])
end
redis.call('SET', KEYS[2], b)
redis.call('DEL', KEYS[4])
redis.call('SET', KEYS[5], ARGV[3])
return 1
`)

// finishBuild swaps the build set in for the ranking (see finishScript).
func (r *Redis) finishBuild(ctx context.Context, token, epoch string) error {
	k := r.keys
	err := finishScript.Run(ctx, r.client,
		[]string{k.Ranking(), k.Generation(), k.BuildRanking(), k.BuildGeneration(), k.Complete()},
		buildingMember, token, epoch).Err()
	if err != nil {
		return fmt.Errorf("swap in rebuilt ranking: %w", err)
	}
	return nil
}

// abortScript drops a build that could not finish, if it is still ours.
//
// KEYS[1] build zset, KEYS[2] build generation. ARGV[1] this build's token.
// Returns 1 when it dropped the build, 0 when the build was not ours.
var abortScript = redis.NewScript(`
local b = redis.call('GET', KEYS[2])
if not b or string.match(b, '^(.*)/') ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2])
return 1
`)

// abortBuild drops this build, leaving any other build alone. Its versions
// hashes go with the next dropOldVersions.
func (r *Redis) abortBuild(ctx context.Context, token string) {
	abortScript.Run(ctx, r.client, []string{r.keys.BuildRanking(), r.keys.BuildGeneration()}, token)
}

// dropScript deletes those of the given versions hashes that belong to
// neither the live generation nor the one a rebuild is filling, as they are
// when it runs: a rebuild that began since the keys were listed keeps its own.
//
// KEYS versions hashes (and the hash of the layout before generations).
// ARGV[1] the versions prefix, ARGV[2] the generation key, ARGV[3] the build
// generation key. Returns how many it deleted.
var dropScript = redis.NewScript(`
local keep = {}
for i = 2, 3 do
  local v = redis.call('GET', ARGV[i])
  if v then keep[ARGV[1] .. string.match(v, '^(.*)/') .. ':'] = true
  elseif i == 2 then keep[ARGV[1] .. '0:'] = true end
end
local n = 0
for _, key in ipairs(KEYS) do
  if not keep[string.match(key, '^(.*:)[^:]*$')] then
    redis.call('UNLINK', key)
    n = n + 1
  end
end
return n
`)

// dropOldVersions deletes the versions hashes of every generation but the
// live one and the one a rebuild is filling: those a finished rebuild
// replaced, and those a rebuild that died left behind.
func (r *Redis) dropOldVersions(ctx context.Context) error {
	k := r.keys
	args := []any{k.VersionsPrefix(), k.Generation(), k.BuildGeneration()}
	keys := k.legacyVersions()
	drop := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := dropScript.Run(ctx, r.client, keys, args...).Err()
		keys = keys[:0]
		return err
	}
	iter := r.client.Scan(ctx, 0, k.VersionsPrefix()+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			if err := drop(); err != nil {
				return fmt.Errorf("drop old ranking versions: %w", err)
			}
		}
	}
	if err := cmp.Or(iter.Err(), drop()); err != nil {
		return fmt.Errorf("drop old ranking versions: %w", err)
	}
	return nil
}
