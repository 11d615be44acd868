// Package rank keeps the live ranking of providers by total net fee in Redis
// sorted sets, answers top-N from them, falls back to Postgres when Redis
// cannot answer, and reconciles the sets with the Postgres totals, the truth.
//
// This package is the one place that names Redis keys (keys.go) and holds
// the ranking's scripts. Every script declares every key it touches, and
// the keys of one call share a shard's hash tag, so the same code runs on a
// standalone Redis and on a Redis Cluster.
package rank

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// maxStaleRetries bounds how often one write re-reads generations that a
// rebuild moved under it; each rebuild moves them twice.
const maxStaleRetries = 5

// applyScript sets totals in one shard's boards, each only when its
// version is at least the version Redis holds, so writes are safe to repeat
// and to reorder: an older total never overwrites a newer one. While a
// rebuild is in progress (KEYS[2] exists) every write lands in the build
// sets too, so the rebuild cannot miss a total committed after it read its
// snapshot.
//
// The caller names the versions hashes from the generations it last saw;
// the script first checks that they are still the live and build ones, and
// when they are not it writes nothing and returns {-1, 0, live, build}, the
// values to name them from.
//
// Writes while no generation is live go to NoGeneration's hashes, which
// are then recorded in the generations set, for a rebuild to drop.
//
// KEYS[1] generation, KEYS[2] build generation, KEYS[3] generations set,
// KEYS[4] the build's boards, KEYS[5...] sorted sets and versions hashes.
// ARGV[1] the generation value the caller saw ("" absent), ARGV[2] the build
// generation value ("" absent), ARGV[3] "1" to measure drift
// (reconciliation) or "0" (a commit's totals), ARGV[4] how many totals,
// ARGV[5] how many expiries; then per total: NPI, total in cents, version,
// the versions hash's value for it ("<version>:<claims>", see stamp), the
// KEYS index of its sorted set and of its versions hash, and of its build
// sorted set and build versions hash (0 while no build runs), and when its
// board expires (unix ms; 0 never); then per expiry: a KEYS index and the
// unix time in ms it expires at (the build's sets); then the boards to add
// to the build's boards. A board's keys get their expiry when a provider
// is added to them (and so when they are created), not at every write.
// Returns {changed, drift}: how many totals' score or version changed in
// the live sets, and, when measured, the sum of |old score - new score|
// over them, in cents, each rounded up (a missing member counts its whole
// new score; a score off by a fraction of a cent counts one). Without drift
// a newer version is written without reading the old score: three calls per
// total instead of four, on the path every claim takes.
//
// A total of no claims (all of them reversed: its stamp ends in ":0")
// leaves its sorted set, and its stamp stays: the provider leaves the
// board's list, and an older write of it still finds the newer version.
//
// Totals stay within claim.MaxTotal (2^53-1 cents), where a double holds
// every integer exactly: tonumber of a total and a score compare exactly,
// so any score that is not exactly its total is found and rewritten.
// Scores and versions are written from the ARGV strings, never from Lua
// numbers, which Lua would format with only 14 significant digits.
var applyScript = redis.NewScript(luaListed + `
local live = redis.call('GET', KEYS[1]) or ''
local build = redis.call('GET', KEYS[2]) or ''
if live ~= ARGV[1] or build ~= ARGV[2] then return {-1, 0, live, build} end
if live == '' then redis.call('SADD', KEYS[3], '` + NoGeneration + `') end
local measure = ARGV[3] == '1'
local expiring = {}
local function expire(key, at)
  if not expiring[key] then
    expiring[key] = true
    redis.call('PEXPIREAT', key, at)
  end
end
local function apply(zkey, vkey, npi, cents, version, stamp, at)
  local held = redis.call('HGET', vkey, npi)
  if held then held = tonumber(string.match(held, '^[^:]+')) end
  if held and held > tonumber(version) then return 0, 0 end
  local listed = has_claims(stamp)
  local score
  if measure or held == tonumber(version) then
    score = tonumber(redis.call('ZSCORE', zkey, npi))
    if held == tonumber(version) and score == (listed and tonumber(cents) or nil) then return 0, 0 end
  end
  local added = 0
  if listed then added = redis.call('ZADD', zkey, cents, npi) else redis.call('ZREM', zkey, npi) end
  if redis.call('HSET', vkey, npi, stamp) + added > 0 and at ~= '0' then
    expire(zkey, at)
    expire(vkey, at)
  end
  if not measure then return 1, 0 end
  return 1, math.ceil(math.abs((listed and tonumber(cents) or 0) - (score or 0)))
end
local changed, drift = 0, 0
local first = 6 + 9 * tonumber(ARGV[4])
for i = 6, first - 1, 9 do
  local npi, cents, version, stamp, at = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+8]
  local c, d = apply(KEYS[tonumber(ARGV[i+4])], KEYS[tonumber(ARGV[i+5])], npi, cents, version, stamp, at)
  changed, drift = changed + c, drift + d
  local b = tonumber(ARGV[i+6])
  if b > 0 then apply(KEYS[b], KEYS[tonumber(ARGV[i+7])], npi, cents, version, stamp, '0') end
end
local boards = first + 2 * tonumber(ARGV[5])
for i = first, boards - 1, 2 do redis.call('PEXPIREAT', KEYS[tonumber(ARGV[i])], ARGV[i+1]) end
for i = boards, #ARGV do redis.call('SADD', KEYS[4], ARGV[i]) end
return {changed, drift}
`)

// stamp is what a provider's field in its versions hash holds:
// "<version>:<claims>", its total's version and its count of claims (read
// by ProviderRank). The scripts compare the part before the colon, and
// keep a total whose count is 0 out of the sorted sets; a field of the
// layout before counts holds the version alone.
func stamp(t claim.ProviderTotal) string {
	return strconv.FormatInt(t.Version, 10) + ":" + strconv.FormatInt(t.Claims, 10)
}

// luaListed is the scripts' reading of a stamp: has_claims(stamp) is false for
// a total of no claims (its count is 0), which no sorted set holds.
const luaListed = `local function has_claims(stamp) return string.sub(stamp, -2) ~= ':0' end
`

// parseStamp reads a versions hash field's value; ok is false when it holds
// no count.
func parseStamp(v string) (version, claims int64, ok bool) {
	ver, count, found := strings.Cut(v, ":")
	version, err1 := strconv.ParseInt(ver, 10, 64)
	claims, err2 := strconv.ParseInt(count, 10, 64)
	return version, claims, found && err1 == nil && err2 == nil
}

// Redis is the ranking as kept in Redis: per shard, one sorted set per
// board it keeps (see claim.Retention).
type Redis struct {
	client redis.UniversalClient
	keys   Keys
	shards []shard
	keep   claim.Retention
	want   atomic.Pointer[string] // the marker of a complete shard, once the database's epoch is known
	until  untilCache
}

// shard is one shard's keys and the generations last seen in it.
type shard struct {
	keys ShardKeys
	seen atomic.Pointer[generations]
}

// generations are the values of a shard's Generation and BuildGeneration
// keys, "" when absent.
type generations struct{ live, build string }

// ExpectEpoch tells the ranking which database it serves: a set rebuilt from
// another one (since recreated) is then not answered from.
func (r *Redis) ExpectEpoch(epoch string) {
	m := r.marker(epoch)
	r.want.Store(&m)
}

// marker is what a rebuild from the database of epoch marks its shards
// complete with: the epoch and the retention it kept, so that a ranking
// kept for other periods is rebuilt rather than trusted.
func (r *Redis) marker(epoch string) string { return epoch + " keep " + r.keep.String() }

// NewRedis returns the ranking kept in client under keys, keeping the
// boards of claim.DefaultRetention (see Keeping): a standalone Redis or a
// cluster client alike.
func NewRedis(client redis.UniversalClient, keys Keys) *Redis {
	r := &Redis{client: client, keys: keys, shards: make([]shard, keys.ShardCount()), keep: claim.DefaultRetention}
	for i := range r.shards {
		r.shards[i].keys = keys.Shard(i)
		r.shards[i].seen.Store(&generations{})
	}
	return r
}

// Keeping makes the ranking keep the boards of keep (NewRedis keeps
// claim.DefaultRetention's); call it before the ranking is used.
func (r *Redis) Keeping(keep claim.Retention) *Redis {
	r.keep = keep
	return r
}

// Keeps says whether the ranking holds board b now; the others are
// Postgres's alone.
func (r *Redis) Keeps(b claim.Board) bool { return r.keep.Keeps(b, time.Now()) }

// expiryGrace is how long a board's keys outlive its retention: lookups
// stop reading it at the retention's end, by their own clock, before
// Redis drops it by its clock.
const expiryGrace = time.Hour

// untilCache remembers when boards leave the ranking, by their period
// (the key without its plan/group), for the write path: a board's key is
// parsed once.
type untilCache struct {
	mu sync.Mutex
	m  map[string]int64 // unix ms; 0 for a board kept for good; -1 not a board
}

// of is when board (a key, not "") leaves the ranking, in unix ms; 0 for
// one kept for good, -1 for a key that names no board.
func (c *untilCache) of(keep claim.Retention, board string) int64 {
	period, _, _ := strings.Cut(board, "|g:")
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms, ok := c.m[period]; ok {
		return ms
	}
	if c.m == nil || len(c.m) > 10000 {
		c.m = map[string]int64{}
	}
	b, ok := claim.ParseBoardKey(board)
	var ms int64 = -1
	if ok {
		ms = 0
		if until := keep.Until(b); !until.IsZero() {
			ms = until.UnixMilli()
		}
	}
	c.m[period] = ms
	return ms
}

// Applied says what a write of totals changed in the ranking.
type Applied struct {
	Changed int         // totals whose score or version moved
	Drift   claim.Cents // sum of how far the changed scores were from the totals
}

// Apply records committed totals, of the all-time ranking and of the boards
// it keeps (the others are skipped). Repeating it, or applying totals out of
// order, leaves the same result. It returns how many totals changed.
func (r *Redis) Apply(ctx context.Context, totals []claim.ProviderTotal) (int, error) {
	a, err := r.apply(ctx, totals, false)
	return a.Changed, err
}

// byShard splits totals by shard, leaving out those of boards the ranking
// does not keep now; with one shard and all-time totals it is totals itself.
func (r *Redis) byShard(totals []claim.ProviderTotal) [][]claim.ProviderTotal {
	now := time.Now().UnixMilli()
	keeps := func(t claim.ProviderTotal) bool {
		if t.Board == "" {
			return true
		}
		until := r.until.of(r.keep, t.Board)
		return until == 0 || until > now
	}
	if len(r.shards) == 1 && !slices.ContainsFunc(totals, func(t claim.ProviderTotal) bool { return !keeps(t) }) {
		return [][]claim.ProviderTotal{totals}
	}
	out := make([][]claim.ProviderTotal, len(r.shards))
	for _, t := range totals {
		if keeps(t) {
			i := r.keys.ShardOf(t.ProviderNPI)
			out[i] = append(out[i], t)
		}
	}
	return out
}

// apply writes totals with applyScript, one call per shard they touch in
// one pipelined round; measureDrift also sums how far the scores it changed
// were from them. A shard whose generations moved since they were last
// seen is written again, named from the new ones.
func (r *Redis) apply(ctx context.Context, totals []claim.ProviderTotal, measureDrift bool) (Applied, error) {
	var out Applied
	groups := r.byShard(totals)
	pending := make([]int, 0, len(groups))
	for i, g := range groups {
		if len(g) > 0 {
			pending = append(pending, i)
		}
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > maxStaleRetries {
			return out, errors.New("apply totals to redis: the ranking's generations keep moving")
		}
		calls := make([]scriptCall, len(pending))
		for j, i := range pending {
			calls[j] = r.applyCall(&r.shards[i], groups[i], measureDrift)
		}
		cmds := r.evalAll(ctx, applyScript, calls)
		next := pending[:0]
		var errs []error
		for j, cmd := range cmds {
			res, err := cmd.Slice()
			if err != nil || len(res) < 2 {
				errs = append(errs, cmp.Or(err, errors.New("unexpected reply")))
				continue
			}
			if n, _ := res[0].(int64); n < 0 && len(res) == 4 {
				live, _ := res[2].(string)
				build, _ := res[3].(string)
				r.shards[pending[j]].seen.Store(&generations{live: live, build: build})
				next = append(next, pending[j])
				continue
			}
			changed, _ := res[0].(int64)
			drift, _ := res[1].(int64)
			out.Changed += int(changed)
			out.Drift += claim.Cents(drift)
		}
		if err := errors.Join(errs...); err != nil {
			return out, fmt.Errorf("apply totals to redis: %w", err)
		}
		pending = next
	}
	return out, nil
}

// keySlots names a script call's KEYS, each once: slot gives a key's
// 1-based index, adding it on first use.
type keySlots struct {
	keys  []string
	index map[string]int
}

func (k *keySlots) slot(name string) int {
	i, ok := k.index[name]
	if !ok {
		k.keys = append(k.keys, name)
		i = len(k.keys) // KEYS is 1-based
		k.index[name] = i
	}
	return i
}

// expiries are the PEXPIREATs of a script call: a KEYS index and a unix
// time in ms, each key once.
type expiries struct {
	set  map[int]bool
	args []any
}

func (e *expiries) add(slot int, ms int64) {
	if ms <= 0 || e.set[slot] {
		return
	}
	if e.set == nil {
		e.set = map[int]bool{}
	}
	e.set[slot] = true
	e.args = append(e.args, slot, ms)
}

// applyCall is applyScript's call for totals of shard s, its versions
// hashes named from the generations last seen there.
func (r *Redis) applyCall(s *shard, totals []claim.ProviderTotal, measureDrift bool) scriptCall {
	seen := s.seen.Load()
	k := s.keys
	ks := keySlots{keys: []string{k.Generation(), k.BuildGeneration(), k.Generations(), k.BuildBoards()}, index: map[string]int{}}
	live, layout, _ := ParseGeneration(cmp.Or(seen.live, NoGeneration))
	build, blayout, building := ParseGeneration(seen.build)
	measure := "0"
	if measureDrift {
		measure = "1"
	}
	var (
		exp       expiries
		register  []any
		buildEnds = time.Now().Add(buildTTL).UnixMilli()
	)
	args := make([]any, 0, 5+9*len(totals))
	args = append(args, seen.live, seen.build, measure, len(totals), 0)
	for _, t := range totals {
		z, v := ks.slot(k.Board(t.Board)), ks.slot(k.BoardVersions(live, layout, t.Board, t.ProviderNPI))
		bz, bv := 0, 0
		if building {
			bz, bv = ks.slot(k.BuildBoard(t.Board)), ks.slot(k.BoardVersions(build, blayout, t.Board, t.ProviderNPI))
		}
		var at int64
		if t.Board != "" {
			if until := r.until.of(r.keep, t.Board); until > 0 {
				at = until + expiryGrace.Milliseconds()
				if building {
					exp.add(bv, at)
				}
			}
		}
		args = append(args, t.ProviderNPI, int64(t.NetFee), t.Version, stamp(t), z, v, bz, bv, at)
		if t.Board == "" {
			continue
		}
		if building && !exp.set[bz] {
			exp.add(bz, buildEnds)
			register = append(register, t.Board)
		}
	}
	args[4] = len(exp.args) / 2
	args = append(append(args, exp.args...), register...)
	return scriptCall{keys: ks.keys, args: args}
}

// scriptCall is one call of a script: its keys (all of one shard) and
// arguments.
type scriptCall struct {
	keys []string
	args []any
}

// evalAll runs script once per call in one pipelined round (one per node
// on a cluster), loading the script where a node lacks it. The commands
// answer in the order of calls.
func (r *Redis) evalAll(ctx context.Context, script *redis.Script, calls []scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	if len(calls) == 1 {
		cmds[0] = script.Run(ctx, r.client, calls[0].keys, calls[0].args...)
		return cmds
	}
	_, _ = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	for i, c := range calls {
		if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			cmds[i] = script.Run(ctx, r.client, c.keys, c.args...)
		}
	}
	return cmds
}

// firstErr is the first error of cmds.
func firstErr[C redis.Cmder](cmds []C) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

// buildScript adds totals to one shard's build sets: the rule of
// applyScript (a total is written unless the set holds a newer version),
// with one call per total in the usual case (HSETNX: no live write got
// there first) and one ZADD per board; a total of no claims is removed.
//
// KEYS[1] build generation, KEYS[2] the build's boards, KEYS[3...] sorted
// sets and versions hashes. ARGV[1] this build's generation value
// ("<token>/<layout>"), ARGV[2] how many totals (at most 2000), ARGV[3] how
// many expiries, then per total: NPI, total in cents, version, its stamp,
// the KEYS index of its build sorted set and of its versions hash; then
// expiries and boards to record, as applyScript's.
// Returns how many totals were written, or an error when the build is not
// this one.
var buildScript = redis.NewScript(luaListed + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('ranking build is not ours: expired, aborted or replaced')
end
local zs, written = {}, 0
local first = 4 + 6 * tonumber(ARGV[2])
for i = 4, first - 1, 6 do
  local npi, cents, version, stamp = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local key = KEYS[tonumber(ARGV[i+5])]
  local write = redis.call('HSETNX', key, npi, stamp) == 1
  if not write then
    local held = tonumber(string.match(redis.call('HGET', key, npi), '^[^:]+'))
    if held <= tonumber(version) then
      redis.call('HSET', key, npi, stamp)
      write = true
    end
  end
  if write and not has_claims(stamp) then
    redis.call('ZREM', KEYS[tonumber(ARGV[i+4])], npi)
    written = written + 1
  elseif write then
    local z = ARGV[i+4]
    if not zs[z] then zs[z] = {} end
    local t = zs[z]
    t[#t+1] = cents; t[#t+1] = npi
    written = written + 1
  end
end
for z, t in pairs(zs) do redis.call('ZADD', KEYS[tonumber(z)], unpack(t)) end
local boards = first + 2 * tonumber(ARGV[3])
for i = first, boards - 1, 2 do redis.call('PEXPIREAT', KEYS[tonumber(ARGV[i])], ARGV[i+1]) end
for i = boards, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return written
`)

// maxBuildBatch bounds the totals of one buildScript call: Lua's unpack
// takes at most about 8000 values.
const maxBuildBatch = 2000

// build is a rebuild in progress: its token and, per shard, the value of
// its generation ("<token>/<layout>").
type build struct {
	token string
	gens  []string
}

// buildBatch adds totals to the build sets, and in the same round trip sums
// how far the live sets' scores are from them (a missing member counts its
// whole total): what the rebuild is about to repair.
func (r *Redis) buildBatch(ctx context.Context, b build, totals []claim.ProviderTotal) (claim.Cents, error) {
	var drift claim.Cents
	for len(totals) > 0 {
		batch := totals[:min(len(totals), maxBuildBatch)]
		totals = totals[len(batch):]
		groups := r.byShard(batch)
		type shardRead struct {
			totals []claim.ProviderTotal
			scores []*redis.FloatCmd
			build  *redis.Cmd
		}
		var reads []shardRead
		_, _ = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, g := range groups {
				if len(g) == 0 {
					continue
				}
				k := r.shards[i].keys
				_, layout, _ := ParseGeneration(b.gens[i])
				call := r.buildCall(k, b.gens[i], b.token, layout, g)
				rd := shardRead{totals: g, build: buildScript.Eval(ctx, p, call.keys, call.args...)}
				for _, t := range g {
					rd.scores = append(rd.scores, p.ZScore(ctx, k.Board(t.Board), t.ProviderNPI))
				}
				reads = append(reads, rd)
			}
			return nil
		})
		for _, rd := range reads {
			if err := rd.build.Err(); err != nil {
				return 0, fmt.Errorf("add totals to the ranking rebuild: %w", err)
			}
			for j, t := range rd.totals {
				score, err := rd.scores[j].Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return 0, fmt.Errorf("add totals to the ranking rebuild: %w", err)
				}
				// A missing member counts as 0. Both are exact doubles within
				// claim.MaxTotal; a fraction of a cent off counts one.
				drift += claim.Cents(math.Ceil(math.Abs(float64(t.NetFee) - score)))
			}
		}
	}
	return drift, nil
}

// buildCall is buildScript's call for totals of the shard of keys k.
func (r *Redis) buildCall(k ShardKeys, gen, token string, layout Layout, totals []claim.ProviderTotal) scriptCall {
	ks := keySlots{keys: []string{k.BuildGeneration(), k.BuildBoards()}, index: map[string]int{}}
	var (
		exp       expiries
		register  []any
		buildEnds = time.Now().Add(buildTTL).UnixMilli()
	)
	args := make([]any, 0, 3+6*len(totals))
	args = append(args, gen, len(totals), 0)
	for _, t := range totals {
		z, v := ks.slot(k.BuildBoard(t.Board)), ks.slot(k.BoardVersions(token, layout, t.Board, t.ProviderNPI))
		args = append(args, t.ProviderNPI, int64(t.NetFee), t.Version, stamp(t), z, v)
		if t.Board == "" {
			continue
		}
		if until := r.until.of(r.keep, t.Board); until > 0 {
			exp.add(v, until+expiryGrace.Milliseconds())
		}
		if !exp.set[z] {
			exp.add(z, buildEnds)
			register = append(register, t.Board)
		}
	}
	args[2] = len(exp.args) / 2
	args = append(append(args, exp.args...), register...)
	return scriptCall{keys: ks.keys, args: args}
}

// TopProviders is BoardTop of the all-time board.
func (r *Redis) TopProviders(ctx context.Context, offset, limit int) ([]claim.ProviderTotal, error) {
	return r.BoardTop(ctx, claim.AllTime, offset, limit)
}

// boardKey is the key of board b in the ranking: "" for the all-time board.
func boardKey(b claim.Board) string {
	if b.IsAllTime() {
		return ""
	}
	return b.Key()
}

// BoardTop returns limit providers of board b from the offset-th (from 0)
// in the order of ZREVRANGE: by total, ties by NPI, both descending. Each
// shard gives its own first offset+limit in one pipelined round, merged
// here exactly (one shard gives just the page). It fails with ErrIncomplete
// when a shard is not known complete; a board the ranking does not keep is
// the caller's to read elsewhere (see Keeps).
func (r *Redis) BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, error) {
	board := boardKey(b)
	complete := make([]*redis.StringCmd, len(r.shards))
	tops := make([]*redis.ZSliceCmd, len(r.shards))
	first := 0 // of each shard's range
	if len(r.shards) == 1 {
		first = offset
	}
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range r.shards {
			k := r.shards[i].keys
			complete[i] = p.Get(ctx, k.Complete())
			tops[i] = p.ZRevRangeWithScores(ctx, k.Board(board), int64(first), int64(offset+limit-1))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read top providers from redis: %w", err)
	}
	if err := firstErr(tops); err != nil {
		return nil, fmt.Errorf("read top providers from redis: %w", err)
	}
	if err := r.checkComplete(complete); err != nil {
		return nil, err
	}
	n := 0
	for _, top := range tops {
		n += len(top.Val())
	}
	out := make([]claim.ProviderTotal, 0, n)
	for _, top := range tops {
		for _, z := range top.Val() {
			npi, _ := z.Member.(string)
			out = append(out, claim.ProviderTotal{ProviderNPI: npi, NetFee: claim.Cents(z.Score)})
		}
	}
	if len(tops) > 1 {
		slices.SortFunc(out, func(a, b claim.ProviderTotal) int {
			return cmp.Or(cmp.Compare(b.NetFee, a.NetFee), strings.Compare(b.ProviderNPI, a.ProviderNPI))
		})
		out = out[min(len(out), offset):min(len(out), offset+limit)]
	}
	return out, nil
}

// ProviderRank is BoardRank in the all-time board.
func (r *Redis) ProviderRank(ctx context.Context, npi string) (claim.Standing, error) {
	return r.BoardRank(ctx, claim.AllTime, npi)
}

// BoardRank answers npi's standing in board b: its total and count from
// its shard, its rank from where its total places it in every shard (with
// one shard, ZREVRANK; with more, a second round counts the other shards'
// members above it). claim.ErrNotFound when the board holds no total of
// npi, or its claims there were all reversed; ErrIncomplete when a shard is
// not known complete, or npi's count predates counts (a rebuild writes it).
func (r *Redis) BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, error) {
	q := &rankQuery{board: b, npi: npi}
	r.boardRanks(ctx, []*rankQuery{q})
	return q.st, q.err
}

// rankQuery is a provider's standing asked of a board, and its answer.
type rankQuery struct {
	board claim.Board
	npi   string
	st    claim.Standing
	err   error
}

// boardRanks answers every query of qs (see BoardRank) in one pipelined
// round: each shard's completeness marker and live generation once, then
// per query its score, rank and count. A query whose shard's generation a
// rebuild moved is asked again, named anew; with several shards each
// answer takes a second round that counts the members above it in the
// others.
func (r *Redis) boardRanks(ctx context.Context, qs []*rankQuery) {
	for attempt := 0; len(qs) > 0; attempt++ {
		if attempt > maxStaleRetries {
			for _, q := range qs {
				q.err = errors.New("read provider rank from redis: the ranking's generations keep moving")
			}
			return
		}
		type replies struct {
			home  *shard
			seen  *generations
			score *redis.FloatCmd
			rank  *redis.IntCmd
			field *redis.StringCmd
		}
		complete := make([]*redis.StringCmd, len(r.shards))
		gens := make([]*redis.StringCmd, len(r.shards))
		rs := make([]replies, len(qs))
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range r.shards {
				complete[i] = p.Get(ctx, r.shards[i].keys.Complete())
			}
			for j, q := range qs {
				i := r.keys.ShardOf(q.npi)
				home, board := &r.shards[i], boardKey(q.board)
				if gens[i] == nil {
					gens[i] = p.Get(ctx, home.keys.Generation())
				}
				seen := home.seen.Load()
				live, layout, _ := ParseGeneration(cmp.Or(seen.live, NoGeneration))
				k := home.keys
				rs[j] = replies{home: home, seen: seen, score: p.ZScore(ctx, k.Board(board), q.npi),
					rank: p.ZRevRank(ctx, k.Board(board), q.npi), field: p.HGet(ctx, k.BoardVersions(live, layout, board, q.npi), q.npi)}
			}
			return nil
		})
		if err == nil || errors.Is(err, redis.Nil) {
			err = r.checkComplete(complete)
		} else {
			err = fmt.Errorf("read provider rank from redis: %w", err)
		}
		if err != nil {
			for _, q := range qs {
				q.err = err
			}
			return
		}
		var again []*rankQuery
		for j, q := range qs {
			rp := rs[j]
			if gen := gens[r.keys.ShardOf(q.npi)].Val(); gen != rp.seen.live { // a rebuild moved the versions
				rp.home.seen.Store(&generations{live: gen, build: rp.seen.build})
				again = append(again, q)
				continue
			}
			q.st, q.err = r.standing(ctx, rp.home, q, rp.score, rp.rank, rp.field)
		}
		qs = again
	}
}

// standing reads q's answer from the replies of its round: claim.ErrNotFound
// when the board holds no total of it, or no claims; ErrIncomplete when its
// count predates counts (a rebuild writes it).
func (r *Redis) standing(ctx context.Context, home *shard, q *rankQuery, score *redis.FloatCmd, rank *redis.IntCmd, field *redis.StringCmd) (claim.Standing, error) {
	if errors.Is(score.Err(), redis.Nil) {
		return claim.Standing{}, claim.ErrNotFound
	}
	_, claims, ok := parseStamp(field.Val())
	if !ok {
		return claim.Standing{}, ErrIncomplete
	}
	if claims == 0 {
		return claim.Standing{}, claim.ErrNotFound
	}
	st := claim.Standing{ProviderNPI: q.npi, NetFee: claim.Cents(score.Val()), Rank: 1 + rank.Val(), Claims: claims}
	if len(r.shards) > 1 {
		above, err := r.aboveInOtherShards(ctx, home, boardKey(q.board), q.npi, score.Val())
		if err != nil {
			return claim.Standing{}, err
		}
		st.Rank += above
	}
	return st, nil
}

// aboveInOtherShards counts the members of every shard but home that the
// ranking lists before (score, npi): a higher score, or the same score and a
// higher NPI. One round reads each shard's count of higher scores and up to
// tieScan+1 of the members tying with it, compared here; a shard with more
// ties counts them itself in a second round (aboveScript), so a lookup
// never reads a whole tie group, however large.
func (r *Redis) aboveInOtherShards(ctx context.Context, home *shard, board, npi string, score float64) (int64, error) {
	s := strconv.FormatFloat(score, 'f', -1, 64)
	type counts struct {
		key    string
		higher *redis.IntCmd
		tied   *redis.StringSliceCmd
	}
	cs := make([]counts, 0, len(r.shards)-1)
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range r.shards {
			if &r.shards[i] == home {
				continue
			}
			key := r.shards[i].keys.Board(board)
			cs = append(cs, counts{key: key, higher: p.ZCount(ctx, key, "("+s, "+inf"),
				tied: p.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: s, Max: s, Count: tieScan + 1})})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read provider rank from redis: %w", err)
	}
	var above int64
	var many []scriptCall // shards with more ties than tieScan
	for _, c := range cs {
		if tied := c.tied.Val(); len(tied) <= tieScan {
			above += c.higher.Val()
			for _, m := range tied {
				if m > npi {
					above++
				}
			}
			continue
		}
		many = append(many, scriptCall{keys: []string{c.key}, args: []any{s, npi}})
	}
	if len(many) == 0 {
		return above, nil
	}
	for _, c := range r.evalAll(ctx, aboveScript, many) {
		n, err := c.Int64()
		if err != nil {
			return 0, fmt.Errorf("read provider rank from redis: %w", err)
		}
		above += n
	}
	return above, nil
}

// tieScan is how many members tying with a provider a rank lookup reads of
// a shard and compares itself; a larger tie group is searched in Redis.
const tieScan = 32

// aboveScript counts the members of a sorted set (KEYS[1]) listed before
// total ARGV[1] and NPI ARGV[2] in ZREVRANGE's order: every higher total, then
// of the equal totals those of higher NPIs. Equal totals sit together, in
// member order, so their count is a binary search of that range: about
// log2(ties) reads of one member each, however many providers tie (totals
// tie often, at round amounts). NPIs are ten digits, so Lua's string
// comparison orders them as the set does.
var aboveScript = redis.NewScript(`
local key, total, npi = KEYS[1], ARGV[1], ARGV[2]
local lo = redis.call('ZCOUNT', key, '(' .. total, '+inf')
local hi = lo + redis.call('ZCOUNT', key, total, total)
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if redis.call('ZREVRANGE', key, mid, mid)[1] > npi then lo = mid + 1 else hi = mid end
end
return lo
`)

// checkComplete fails with ErrIncomplete unless every shard's marker (the
// replies of GET Complete) names the database this ranking serves, and the
// boards it keeps.
func (r *Redis) checkComplete(markers []*redis.StringCmd) error {
	want := r.want.Load()
	for _, m := range markers {
		builtFrom := m.Val()
		if builtFrom == "" || (want != nil && *want != builtFrom) {
			return ErrIncomplete
		}
	}
	return nil
}

// completeMarker returns the marker every shard was last rebuilt with (see
// marker), "" when a shard is not known complete or they differ.
func (r *Redis) completeMarker(ctx context.Context) (string, error) {
	cmds := make([]*redis.StringCmd, len(r.shards))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range r.shards {
			cmds[i] = p.Get(ctx, r.shards[i].keys.Complete())
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	epoch := cmds[0].Val()
	for _, c := range cmds[1:] {
		if c.Val() != epoch {
			return "", nil
		}
	}
	return epoch, nil
}

// beginScript starts a rebuild of one shard aside, and records its
// generation in the set of those whose versions a later rebuild drops.
//
// KEYS[1] build zset, KEYS[2] build generation, KEYS[3] generations set,
// KEYS[4] the build's boards. ARGV[1] the building member, ARGV[2] the
// build's generation value, ARGV[3] its TTL in milliseconds.
var beginScript = redis.NewScript(`
redis.call('UNLINK', KEYS[1], KEYS[4])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
`)

// swapChunk is how many boards one script of a swap renames: a script
// blocks Redis while it runs, and lookups wait behind it.
const swapChunk = 500

// beginBuild starts a rebuild aside: from here on every Apply also writes to
// the build sets. It must be called before the snapshot of the truth is
// read. The returned build names this one; only its owner can finish it.
// Its versions hashes use enough NPI digits for about 100 of a shard's
// providers each, in the all-time board and in the largest board of each
// kind (sizes, by board key, "" the all-time one). The boards' sets an
// earlier build left aside go first. (Should a write add one to that
// build meanwhile, the set stays until it expires, and this build writes
// every provider of that board it holds over what is in it.)
func (r *Redis) beginBuild(ctx context.Context, sizes map[string]int64) (build, error) {
	token := strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatUint(rand.Uint64()%1e6, 36)
	gen := token + "/" + r.layoutFor(sizes).String()
	b := build{token: token, gens: make([]string, len(r.shards))}
	calls := make([]scriptCall, len(r.shards))
	for i := range r.shards {
		k := r.shards[i].keys
		b.gens[i] = gen
		left, err := r.client.SMembers(ctx, k.BuildBoards()).Result()
		if err != nil {
			return b, fmt.Errorf("begin ranking rebuild: %w", err)
		}
		for chunk := range slices.Chunk(left, swapChunk) {
			sets := make([]string, len(chunk))
			for j, board := range chunk {
				sets[j] = k.BuildBoard(board)
			}
			if err := r.client.Unlink(ctx, sets...).Err(); err != nil {
				return b, fmt.Errorf("begin ranking rebuild: %w", err)
			}
		}
		calls[i] = scriptCall{
			keys: []string{k.BuildRanking(), k.BuildGeneration(), k.Generations(), k.BuildBoards()},
			args: []any{buildingMember, gen, buildTTL.Milliseconds()},
		}
	}
	if err := firstErr(r.evalAll(ctx, beginScript, calls)); err != nil {
		return b, fmt.Errorf("begin ranking rebuild: %w", err)
	}
	return b, nil
}

// layoutFor sizes a generation's versions hashes for the boards of sizes.
func (r *Redis) layoutFor(sizes map[string]int64) Layout {
	per := int64(len(r.shards))
	var largest [numKinds]int64
	for board, n := range sizes {
		if board != "" {
			largest[kindOf(board)] = max(largest[kindOf(board)], n)
		}
	}
	l := Layout{All: versionDigits(sizes[""] / per)}
	for i, n := range largest {
		// A kind whose boards fit one listpack hash each gets one hash a
		// board: most boards are small (a plan's, a day's), and each key
		// costs about as much as a hundred bytes of fields.
		if l.Boards[i] = versionDigits(n / per); n/per <= 120 {
			l.Boards[i] = 0
		}
	}
	return l
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

// versionsOutgrown reports whether some shard's live versions hashes hold,
// on average, more providers than a listpack does, in the all-time board or
// in the largest board of a kind (or no rebuild has named its generation):
// then a rebuild sizes them anew.
func (r *Redis) versionsOutgrown(ctx context.Context, sizes map[string]int64) (bool, error) {
	gens, err := r.liveGenerations(ctx)
	if err != nil {
		return false, err
	}
	need := r.layoutFor(sizes)
	for _, g := range gens {
		_, l, ok := ParseGeneration(g)
		if !ok || need.All > l.All {
			return true, nil
		}
		for i := range numKinds {
			if need.Boards[i] > l.Boards[i] {
				// versionDigits leaves room (120 of 128); grown past a
				// listpack's 128 by more than a tenth, resize.
				n := int64(1)
				for range l.Boards[i] {
					n *= 10
				}
				if largestOfKind(sizes, i)/int64(len(r.shards)) > 141*n {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// largestOfKind is the most providers a board of kind holds in sizes.
func largestOfKind(sizes map[string]int64, kind int) int64 {
	var n int64
	for board, size := range sizes {
		if board != "" && kindOf(board) == kind {
			n = max(n, size)
		}
	}
	return n
}

// liveGenerations reads every shard's Generation key ("" when absent).
func (r *Redis) liveGenerations(ctx context.Context) ([]string, error) {
	cmds := make([]*redis.StringCmd, len(r.shards))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range r.shards {
			cmds[i] = p.Get(ctx, r.shards[i].keys.Generation())
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// swapScript swaps some of a shard's finished boards in, each atomically:
// a reader sees a board's old set or its new one. Both are whole: the old
// one was kept by every write while the build ran, as the new one was.
//
// KEYS[1] build generation, KEYS[2] generation, then per board its build
// set and its live set. ARGV[1] this build's generation value, then per
// board when its live set expires (unix ms; 0 never). Returns 1; an error
// when the build is not this one, unless this build is already live (a
// retried call whose first run finished).
var swapScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if redis.call('GET', KEYS[2]) == ARGV[1] then return 1 end
  return redis.error_reply('ranking build is not ours: expired, aborted or replaced')
end
-- UNLINK frees an old set in the background: DEL of a million members
-- would block Redis, and every lookup, for longer than a second.
for i = 3, #KEYS, 2 do
  redis.call('UNLINK', KEYS[i+1])
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i+1])
    local at = ARGV[2 + (i - 3) / 2]
    if at == '0' then redis.call('PERSIST', KEYS[i+1]) else redis.call('PEXPIREAT', KEYS[i+1], at) end
  end
end
return 1
`)

// finishScript swaps a shard's finished all-time set in, switches its
// versions to the build's generation and marks the shard complete, once
// every board the build holds has been swapped in (swapScript).
//
// KEYS[1] ranking zset, KEYS[2] generation, KEYS[3] build zset,
// KEYS[4] build generation, KEYS[5] completeness marker, KEYS[6] the
// build's boards. ARGV[1] the building member, ARGV[2] this build's
// generation value, ARGV[3] the marker's value (see marker), ARGV[4] how
// many boards were swapped in.
// Returns 1; 0 when the build holds more boards than were swapped in (a
// write added one: the caller swaps it and calls again); an error when the
// build is not this one (it expired, was aborted, or another rebuild
// replaced it), unless it is already live (a retried call).
var finishScript = redis.NewScript(`
local b = redis.call('GET', KEYS[4])
if b ~= ARGV[2] then
  if redis.call('GET', KEYS[2]) == ARGV[2] then return 1 end
  return redis.error_reply('ranking build is not ours: expired, aborted or replaced')
end
if redis.call('SCARD', KEYS[6]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('UNLINK', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[1])
  redis.call('PERSIST', KEYS[1])
end
redis.call('SET', KEYS[2], b)
redis.call('DEL', KEYS[4], KEYS[6])
redis.call('SET', KEYS[5], ARGV[3])
return 1
`)

// finishBuild swaps every shard's build sets in for its boards (see
// swapScript and finishScript), and returns the boards it swapped in. A
// shard's all-time set, generation and marker switch atomically, after its
// boards; a lookup between two shards' switches merges shards that are
// each complete.
func (r *Redis) finishBuild(ctx context.Context, b build, epoch string) ([]string, error) {
	all := map[string]bool{}
	for i := range r.shards {
		k := r.shards[i].keys
		swapped := map[string]bool{}
		for attempt := 0; ; attempt++ {
			boards, err := r.client.SMembers(ctx, k.BuildBoards()).Result()
			if err != nil {
				return nil, fmt.Errorf("swap in rebuilt ranking: %w", err)
			}
			boards = slices.DeleteFunc(boards, func(board string) bool { return swapped[board] })
			for chunk := range slices.Chunk(boards, swapChunk) {
				keys := []string{k.BuildGeneration(), k.Generation()}
				args := []any{b.gens[i]}
				for _, board := range chunk {
					keys = append(keys, k.BuildBoard(board), k.Board(board))
					var at int64
					if until := r.until.of(r.keep, board); until > 0 {
						at = until + expiryGrace.Milliseconds()
					}
					args = append(args, at)
				}
				if err := swapScript.Run(ctx, r.client, keys, args...).Err(); err != nil {
					return nil, fmt.Errorf("swap in rebuilt ranking: %w", err)
				}
				for _, board := range chunk {
					swapped[board], all[board] = true, true
				}
			}
			n, err := finishScript.Run(ctx, r.client,
				[]string{k.Ranking(), k.Generation(), k.BuildRanking(), k.BuildGeneration(), k.Complete(), k.BuildBoards()},
				buildingMember, b.gens[i], r.marker(epoch), len(swapped)).Int()
			if err != nil {
				return nil, fmt.Errorf("swap in rebuilt ranking: %w", err)
			}
			if n == 1 {
				break
			}
			if attempt >= maxStaleRetries {
				return nil, errors.New("swap in rebuilt ranking: the build's boards keep changing")
			}
		}
	}
	return slices.Collect(maps.Keys(all)), nil
}

// abortScript drops a shard's build that could not finish, if it is still
// ours. Its boards' sets expire with the build, or go when the next build
// begins.
//
// KEYS[1] build zset, KEYS[2] build generation. ARGV[1] this build's
// generation value. Returns 1 when it dropped the build, 0 when the build
// was not ours.
var abortScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2])
return 1
`)

// abortBuild drops this build, leaving any other build alone. Its versions
// hashes go with the next dropOldVersions.
func (r *Redis) abortBuild(ctx context.Context, b build) {
	calls := make([]scriptCall, len(r.shards))
	for i := range r.shards {
		k := r.shards[i].keys
		calls[i] = scriptCall{keys: []string{k.BuildRanking(), k.BuildGeneration()}, args: []any{b.gens[i]}}
	}
	r.evalAll(ctx, abortScript, calls)
}

// dropScript deletes versions hashes of one generation of a shard, unless
// it is the live one or the one a rebuild is filling as it runs: a rebuild
// that began since the generations were listed keeps its own. The last
// call for a generation takes it out of the set.
//
// KEYS[1] generation, KEYS[2] build generation, KEYS[3] generations set,
// KEYS[4...] the hashes. ARGV[1] the generation value, ARGV[2] NoGeneration,
// ARGV[3] "1" on the last call. Returns how many hashes it deleted.
var dropScript = redis.NewScript(`
local live = redis.call('GET', KEYS[1]) or ARGV[2]
if ARGV[1] == live or ARGV[1] == redis.call('GET', KEYS[2]) then return 0 end
local n = 0
if #KEYS > 3 then n = redis.call('UNLINK', unpack(KEYS, 4)) end
if ARGV[3] == '1' then redis.call('SREM', KEYS[3], ARGV[1]) end
return n
`)

// dropChunk is how many versions hashes one dropScript call deletes.
const dropChunk = 1000

// dropOldVersions deletes, in every shard, the versions hashes of every
// generation but the live one and the one a rebuild is filling: those a
// finished rebuild replaced, and those a rebuild that died left behind. A
// generation's hashes are named by its layout and by the boards, those of
// boards (every board the ranking keeps); none is searched for. Those of
// boards no longer kept expire with them.
func (r *Redis) dropOldVersions(ctx context.Context, boards []string) error {
	for i := range r.shards {
		k := r.shards[i].keys
		gens, err := r.client.SMembers(ctx, k.Generations()).Result()
		if err != nil {
			return fmt.Errorf("drop old ranking versions: %w", err)
		}
		for _, g := range gens {
			name, layout, ok := ParseGeneration(g)
			if !ok { // not one of ours: only forget it
				r.client.SRem(ctx, k.Generations(), g)
				continue
			}
			if err := r.dropGeneration(ctx, k, g, name, layout, boards); err != nil {
				return fmt.Errorf("drop old ranking versions: %w", err)
			}
		}
	}
	if _, cluster := r.client.(*redis.ClusterClient); !cluster {
		return r.dropLegacy(ctx)
	}
	return nil
}

// dropGeneration deletes the versions hashes of generation g of shard k
// (unless it is live or building), those of the all-time board and of
// boards, in calls of dropChunk hashes.
func (r *Redis) dropGeneration(ctx context.Context, k ShardKeys, g, name string, l Layout, boards []string) error {
	head := []string{k.Generation(), k.BuildGeneration(), k.Generations()}
	keys := slices.Clone(head)
	flush := func(last bool) error {
		if len(keys) == len(head) && !last {
			return nil
		}
		done := "0"
		if last {
			done = "1"
		}
		err := dropScript.Run(ctx, r.client, keys, g, NoGeneration, done).Err()
		keys = slices.Clone(head)
		return err
	}
	for i, board := range append([]string{""}, boards...) {
		if i > 0 && board == "" {
			continue
		}
		digits := l.All
		if board != "" {
			digits = l.Boards[kindOf(board)]
		}
		total := 1
		for range digits {
			total *= 10
		}
		for suffix := range total {
			npi := "" // digits 0: the board's one hash
			if digits > 0 {
				npi = fmt.Sprintf("%0*d", digits, suffix)
			}
			keys = append(keys, k.BoardVersions(name, l, board, npi))
			if len(keys)-len(head) == dropChunk {
				if err := flush(false); err != nil {
					return err
				}
			}
		}
	}
	return flush(true)
}

// dropLegacy deletes, on a standalone Redis, the keys of the ranking's
// layout before shards, if any are left.
func (r *Redis) dropLegacy(ctx context.Context) error {
	iter := r.client.Scan(ctx, 0, r.keys.legacyPattern(), 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("drop the ranking's old layout: %w", err)
	}
	for chunk := range slices.Chunk(keys, 1000) {
		if err := r.client.Unlink(ctx, chunk...).Err(); err != nil {
			return fmt.Errorf("drop the ranking's old layout: %w", err)
		}
	}
	return nil
}
