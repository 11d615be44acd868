package rank

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// Keys names every Redis key the service uses, under one prefix
// (REDIS_KEY_PREFIX): the ranking's, the rate limiter's and the queued
// claims' statuses.
//
// The ranking is split into Shards shards (RANK_SHARDS). Every key of one
// shard carries the shard's hash tag, so that on a Redis Cluster they share
// a slot (a script may touch them together) while different shards spread
// over the masters.
type Keys struct {
	Prefix string
	Shards int // 0 counts as 1
}

// DefaultPrefix is REDIS_KEY_PREFIX's default.
const DefaultPrefix = "claimd:"

// MaxShards bounds RANK_SHARDS: a lookup reads every shard.
const MaxShards = 256

// ShardCount is how many shards the ranking has.
func (k Keys) ShardCount() int { return max(k.Shards, 1) }

// ShardOf is the shard a provider belongs to: a stable hash of its NPI
// (FNV-1a), so every instance and every rebuild agree.
func (k Keys) ShardOf(npi string) int {
	n := k.ShardCount()
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(npi))
	return int(h.Sum32() % uint32(n))
}

// Shard names the keys of shard i. The hash tag names the shard and the
// count, so a change of RANK_SHARDS starts from new keys (and a rebuild)
// rather than reading a layout it did not write.
func (k Keys) Shard(i int) ShardKeys {
	return ShardKeys{k.Prefix + "rank{" + strconv.Itoa(i) + "/" + strconv.Itoa(k.ShardCount()) + "}:"}
}

// ShardKeys names the keys of one shard of the ranking.
type ShardKeys struct{ base string }

// Ranking is the shard's sorted set: member provider NPI, score total net
// fee in cents.
func (s ShardKeys) Ranking() string { return s.base + "providers" }

// Generation names the live versions: "<generation>/<digits>". Each
// provider's version lives in the hash Versions(generation, digits, npi).
// Many small hashes rather than one big one: Redis keeps a hash of up to
// 128 fields as a compact listpack, about a quarter of the memory of a hash
// table (a rebuild picks digits for ~100 fields each). Absent, the
// generation is "0" with 1 digit (NoGeneration).
func (s ShardKeys) Generation() string { return s.base + "gen" }

// Versions names the versions hash of generation gen, of digits digits,
// that holds npi's version in the all-time ranking: the hashes are named by
// the NPI's last digits.
func (s ShardKeys) Versions(gen string, digits int, npi string) string {
	return s.base + "v:" + gen + ":" + npi[max(len(npi)-digits, 0):]
}

// Board is the sorted set of the board of key board (claim.Board.Key) in
// the shard; "" names the all-time ranking, Ranking.
func (s ShardKeys) Board(board string) string {
	if board == "" {
		return s.Ranking()
	}
	return s.base + "b:" + board
}

// BuildBoard is the set a rebuild fills aside for board; "" names
// BuildRanking.
func (s ShardKeys) BuildBoard(board string) string {
	if board == "" {
		return s.BuildRanking()
	}
	return s.base + "build:b:" + board
}

// BoardVersions names the versions hash of generation gen (laid out as l)
// holding npi's version in board ("" the all-time ranking): a board's
// hashes are named by the board and the NPI's last digits, as many as
// the generation gives the board's kind (none: one hash for the board).
func (s ShardKeys) BoardVersions(gen string, l Layout, board, npi string) string {
	if board == "" {
		return s.Versions(gen, l.All, npi)
	}
	d := l.Boards[kindOf(board)]
	return s.base + "v:" + gen + ":" + board + ":" + npi[max(len(npi)-d, 0):]
}

// BuildBoards is the set of the boards (keys) a rebuild holds aside, for
// its swap to name them all.
func (s ShardKeys) BuildBoards() string { return s.base + "build:boards" }

// VersionsPattern matches every versions hash of generation gen.
func (s ShardKeys) VersionsPattern(gen string) string { return s.base + "v:" + gen + ":*" }

// Generations is the set of every generation ("<generation>/<digits>")
// whose versions hashes may exist: a rebuild drops all but the live one
// and its own, without scanning the keyspace.
func (s ShardKeys) Generations() string { return s.base + "gens" }

// Complete exists only while the shard is known to hold every one of its
// providers: a rebuild sets it to the epoch of the database it read; Redis
// losing its data loses it too.
func (s ShardKeys) Complete() string { return s.base + "complete" }

// BuildRanking is the set a rebuild fills aside before swapping it in;
// BuildGeneration, which exists while a rebuild runs, names its versions
// like Generation, the generation being the rebuild's token.
func (s ShardKeys) BuildRanking() string    { return s.base + "build" }
func (s ShardKeys) BuildGeneration() string { return s.base + "build:gen" }

// NoGeneration is the generation writes use while the Generation key is
// absent (before the first rebuild, or after Redis lost its data): ten
// hashes per board, few to name when the first rebuild drops them, and too
// short-lived for their encoding to matter.
const NoGeneration = "0/1"

// Board kinds, by how many providers their boards tend to hold: each kind's
// versions hashes are named by as many NPI digits as its largest board
// needs.
const (
	kindDay = iota
	kindWeek
	kindMonth
	kindYear
	kindPlan      // a plan/group's all-time board
	kindPlanMonth // a plan/group's month board
	numKinds
)

// kindOf is the kind of the board of key board (not "").
func kindOf(board string) int {
	segment := strings.Contains(board, "|g:")
	switch {
	case strings.HasPrefix(board, "a"):
		return kindPlan
	case strings.HasPrefix(board, "d:"):
		return kindDay
	case strings.HasPrefix(board, "w:"):
		return kindWeek
	case strings.HasPrefix(board, "y:"):
		return kindYear
	case segment:
		return kindPlanMonth
	}
	return kindMonth
}

// Layout is how many trailing NPI digits name a generation's versions
// hashes: the all-time ranking's, and each kind of board's.
type Layout struct {
	All    int
	Boards [numKinds]int
}

// String is the Layout as a Generation value writes it after the
// generation's name: "<all>" then one digit per kind, "2/112211".
func (l Layout) String() string {
	b := []byte(strconv.Itoa(l.All) + "/")
	for _, d := range l.Boards {
		b = append(b, byte('0'+d))
	}
	return string(b)
}

// ParseGeneration reads the value of a Generation key,
// "<name>/<all digits>[/<a digit per kind>]": the generation's name and
// layout. ok is false for a value that is not one; the live generation is
// then NoGeneration's. Boards of a value without their digits take one.
func ParseGeneration(v string) (gen string, l Layout, ok bool) {
	gen, rest, _ := strings.Cut(v, "/")
	all, kinds, _ := strings.Cut(rest, "/")
	l = Layout{All: 1, Boards: [numKinds]int{1, 1, 1, 1, 1, 1}}
	d, err := strconv.Atoi(all)
	if err != nil || d < 1 || d > 9 {
		return "0", l, false
	}
	l.All = d
	if len(kinds) == numKinds {
		for i := range numKinds {
			if kinds[i] < '0' || kinds[i] > '9' {
				return "0", Layout{All: 1, Boards: [numKinds]int{1, 1, 1, 1, 1, 1}}, false
			}
			l.Boards[i] = int(kinds[i] - '0')
		}
	}
	return gen, l, true
}

// legacyPattern matches the ranking's keys of the layout before shards
// (one set, "rank:providers..."), which a rebuild on a standalone Redis
// deletes.
func (k Keys) legacyPattern() string { return k.Prefix + "rank:providers*" }

// RateLimit is the rate limiter's key for one client of one route.
func (k Keys) RateLimit(route, client string) string {
	return k.Prefix + "ratelimit:" + route + ":" + client
}

// Queued holds the status of a claim accepted for the queue and not stored
// under its own id (async mode).
func (k Keys) Queued(id string) string { return k.Prefix + "queued:" + id }

// QueuedBy is the sorted set of one client's queued statuses, scored by
// their expiry: it counts them against the client's cap.
func (k Keys) QueuedBy(client string) string { return k.Prefix + "queued-by:" + client }
