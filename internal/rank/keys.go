package rank

import (
	"strconv"
	"strings"
)

// Keys names every Redis key the service uses, under one prefix
// (REDIS_KEY_PREFIX): the ranking's, the rate limiter's and the queued
// claims' statuses.
type Keys struct{ Prefix string }

// DefaultPrefix is REDIS_KEY_PREFIX's default.
const DefaultPrefix = "claimd:"

// Ranking is the sorted set: member provider NPI, score total net fee in cents.
func (k Keys) Ranking() string { return k.Prefix + "rank:providers" }

// Generation names the live versions: "<generation>/<digits>". Each
// provider's version lives in the hash VersionsPrefix()+generation+":"+(the
// last digits of its NPI). Many small hashes rather than one big one: Redis
// keeps a hash of up to 128 fields as a compact listpack, about a quarter of
// the memory of a hash table (a rebuild picks digits for ~100 fields each).
// Absent, the generation is "0" with 4 digits.
func (k Keys) Generation() string { return k.Prefix + "rank:providers:gen" }

// ParseGeneration reads the value of the Generation key: the generation's
// name and how many NPI digits name its hashes. ok is false for a value
// that is not one; the live generation is then "0" with 4 digits, as when
// the key is absent.
func ParseGeneration(v string) (gen string, digits int, ok bool) {
	gen, d, _ := strings.Cut(v, "/")
	digits, err := strconv.Atoi(d)
	if err != nil {
		return "0", 4, false
	}
	return gen, digits, true
}

// VersionsPrefix begins the name of every versions hash, of any generation.
func (k Keys) VersionsPrefix() string { return k.Prefix + "rank:providers:v:" }

// Complete exists only while the set is known to hold every provider: a
// rebuild sets it to the epoch of the database it read; Redis losing its
// data loses it too.
func (k Keys) Complete() string { return k.Prefix + "rank:providers:complete" }

// BuildRanking is the set a rebuild fills aside before swapping it in;
// BuildGeneration, which exists while a rebuild runs, names its versions
// like Generation, the generation being the rebuild's token.
func (k Keys) BuildRanking() string    { return k.Prefix + "rank:providers:build" }
func (k Keys) BuildGeneration() string { return k.Prefix + "rank:providers:build:gen" }

// legacyVersions are the single versions hashes (live and build) that the
// generations replaced; a rebuild deletes them where they are left.
func (k Keys) legacyVersions() []string {
	return []string{k.Prefix + "rank:providers:versions", k.Prefix + "rank:providers:build:versions"}
}

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
