package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
)

// redisRaw measures ZREVRANGE key 0 9 WITHSCORES on the ranking itself, with
// a Go client and with redis-benchmark when it is installed.
func (s *suite) redisRaw(ctx context.Context, st *stageResult) error {
	key := rank.Keys{Prefix: s.redisPrefix}.Shard(0).Ranking() // the suite's claimd runs one shard
	const goroutines = 16
	rdb, err := newRedisClient(s.cfg.RedisURL, 2*goroutines)
	if err != nil {
		return err
	}
	defer rdb.Close()
	s.logf("Redis alone: ZREVRANGE %s 0 9 WITHSCORES, go-redis, %d goroutines, %s", key, goroutines, s.sc.RedisDur)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lats []time.Duration
		errs atomic.Int64
	)
	started := time.Now()
	deadline := started.Add(s.sc.RedisDur)
	for range goroutines {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				if err := rdb.ZRevRangeWithScores(ctx, key, 0, 9).Err(); err != nil {
					errs.Add(1)
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	st.RedisRaw = rawRate{PerSec: float64(len(lats)) / time.Since(started).Seconds(), Latency: latencies(lats), Errors: errs.Load(), Clients: goroutines}

	st.RedisBench, st.RedisBenchNote = s.redisBenchmark(ctx, key)
	s.logf("Redis alone: %.0f/s (go-redis), %.0f/s (redis-benchmark) %s", st.RedisRaw.PerSec, st.RedisBench, st.RedisBenchNote)
	return nil
}

// redisBenchmark runs redis-benchmark on the same command; 0 and a note
// when it is not installed or fails.
func (s *suite) redisBenchmark(ctx context.Context, key string) (float64, string) {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return 0, "redis-benchmark not installed"
	}
	u, err := url.Parse(s.cfg.RedisURL)
	if err != nil {
		return 0, err.Error()
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = "0"
	}
	args := []string{"-h", u.Hostname(), "-p", cmp.Or(u.Port(), "6379"), "--dbnum", db,
		"-n", strconv.Itoa(s.sc.RedisBenchN), "-c", "16", "--csv", "ZREVRANGE", key, "0", "9", "WITHSCORES"}
	if pw, ok := u.User.Password(); ok {
		args = append([]string{"-a", pw}, args...)
	}
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return 0, "redis-benchmark failed: " + err.Error()
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[1]) < 2 {
		return 0, fmt.Sprintf("redis-benchmark output not understood: %.200s", out)
	}
	rps, err := strconv.ParseFloat(recs[1][1], 64)
	if err != nil {
		return 0, fmt.Sprintf("redis-benchmark output not understood: %.200s", out)
	}
	return rps, "16 clients, no pipelining"
}

// redisMemory is the ranking's sorted set and its live versions hashes
// (see rank.Keys), per provider.
func (s *suite) redisMemory(ctx context.Context, st *stageResult) {
	rdb, err := newRedisClient(s.cfg.RedisURL, 1)
	if err != nil {
		return
	}
	defer rdb.Close()
	keys := rank.Keys{Prefix: s.redisPrefix}.Shard(0) // the suite's claimd runs one shard
	n, err1 := rdb.ZCard(ctx, keys.Ranking()).Result()
	zset, err2 := rdb.MemoryUsage(ctx, keys.Ranking(), 0).Result()
	gen, err3 := rdb.Get(ctx, keys.Generation()).Result()
	gen, _, _ = strings.Cut(gen, "/")
	// The all-time ranking's hashes are named by NPI digits alone; the other
	// boards' begin with the board (a letter), counted below.
	hashes, versions, err4 := memoryOfKeys(ctx, rdb, strings.TrimSuffix(keys.VersionsPattern(gen), "*")+"[0-9]*")
	if err := errors.Join(err1, err2, err3, err4); err != nil || n == 0 {
		st.RedisMemNote = fmt.Sprintf("could not read: %v (%d members)", err, n)
		return
	}
	st.RedisProviders, st.RedisZsetBytes, st.RedisHashBytes, st.RedisHashes = n, zset, versions, hashes
	st.RedisBytesPerProvider = float64(zset+versions) / float64(n)

	// The other boards: their sets ("…:b:<board>"), and the versions hashes
	// named by a board (which begins with a letter; the all-time ones are
	// named by digits alone).
	boards, err := loadkit.ScanKeys(ctx, rdb, strings.TrimSuffix(keys.Board("x"), "x")+"*")
	if err != nil {
		return
	}
	var entries, size int64
	for chunk := range slices.Chunk(boards, 1000) {
		cmds, _ := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range chunk {
				p.ZCard(ctx, k)
				p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		for i := 0; i+1 < len(cmds); i += 2 {
			entries += cmds[i].(*redis.IntCmd).Val()
			size += cmds[i+1].(*redis.IntCmd).Val()
		}
	}
	_, boardVersions, err := memoryOfKeys(ctx, rdb, strings.TrimSuffix(keys.VersionsPattern(gen), "*")+"[a-z]*")
	if err != nil {
		return
	}
	st.RedisBoards, st.RedisBoardEntries, st.RedisBoardBytes = int64(len(boards)), entries, size+boardVersions
}

// memoryOfKeys sums MEMORY USAGE over the keys matching pattern.
func memoryOfKeys(ctx context.Context, rdb *redis.Client, pattern string) (keys int, bytes int64, err error) {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	sum := func() error {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		for _, c := range cmds {
			bytes += c.(*redis.IntCmd).Val()
		}
		keys += len(batch)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := sum(); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return 0, 0, err
	}
	if len(batch) > 0 {
		err = sum()
	}
	return keys, bytes, err
}

// deletePrefix deletes the keys under prefix, and nothing else: SCAN MATCH
// prefix* then UNLINK (large sets are freed in the background).
func deletePrefix(ctx context.Context, redisURL, prefix string) (int, error) {
	rdb, err := newRedisClient(redisURL, 4)
	if err != nil {
		return 0, err
	}
	defer rdb.Close()
	n := 0
	iter := rdb.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := rdb.Unlink(ctx, iter.Val()).Err(); err != nil {
			return n, err
		}
		n++
	}
	return n, iter.Err()
}

// escapeGlob escapes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

func newRedisClient(redisURL string, pool int) (*redis.Client, error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opts.PoolSize = pool
	return redis.NewClient(opts), nil
}
