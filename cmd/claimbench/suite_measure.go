package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
)

// Preloaded data: claims of four lines, ids in order (as claimd's UUIDv7
// are), lines spread evenly over the providers, provider_totals equal to the
// sum of the lines, exactly as ingestion would leave them. Line k (= claim *
// 4 + line_no) goes to provider k*7919 mod P (7919 is prime: a bijection on
// residues, so 1M lines over 1M providers give each one line and 10M give
// each ten); its fee is drawn from k too.
const (
	preloadClaimsSQL = `
INSERT INTO claims (id, received_at, net_fee_cents, line_count)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, now(), s.net, 4
FROM generate_series($1::bigint, $2::bigint) g,
     LATERAL (SELECT sum(f - f * 3 / 5) AS net
              FROM generate_series(0, 3) l, LATERAL (SELECT 2000 + ((g * 4 + l) * 7907) % 98000 AS f) x) s`
	preloadLinesSQL = `
INSERT INTO claim_lines (claim_id, line_no, service_date, submitted_procedure, quadrant, plan_group, subscriber,
    provider_npi, provider_fees_cents, allowed_fees_cents, member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, l, date '2025-01-01' + (g % 365)::int,
       (ARRAY['D0120', 'D0180', 'D1110', 'D2740'])[1 + (g + l) % 4], NULL, 'GRP-' || lpad((g % 10000)::text, 4, '0'),
       lpad((g * 7919 % 10000000000)::text, 10, '0'), '2' || lpad(((g * 4 + l) * 7919 % $3::bigint)::text, 9, '0'),
       f, f * 3 / 5, 0, 0, f - f * 3 / 5
FROM generate_series($1::bigint, $2::bigint) g, generate_series(0, 3) l,
     LATERAL (SELECT 2000 + ((g * 4 + l) * 7907) % 98000 AS f) x`
	// The preloaded providers' NPIs begin with 2, claimbench's with 1.
	preloadTotalsSQL = `
INSERT INTO provider_totals AS t (provider_npi, total_net_fee_cents, version, updated_at)
SELECT provider_npi, sum(net_fee_cents), 1, now() FROM claim_lines
WHERE starts_with(provider_npi, '2') GROUP BY provider_npi
ON CONFLICT (provider_npi) DO UPDATE
SET total_net_fee_cents = excluded.total_net_fee_cents, version = t.version + 1, updated_at = now()
WHERE t.total_net_fee_cents <> excluded.total_net_fee_cents`
	trueTopSQL = `
SELECT provider_npi, total_net_fee_cents FROM provider_totals
ORDER BY total_net_fee_cents DESC, provider_npi DESC LIMIT $1`
)

// preloadTo adds claim lines until the database holds `lines` preloaded ones.
func (s *suite) preloadTo(ctx context.Context, st *stageResult, lines int64) error {
	first, last := s.preloaded/4+1, lines/4
	if last < first {
		return nil
	}
	s.logf("preloading %d claim lines (%d claims) over %d providers", (last-first+1)*4, last-first+1, s.sc.Providers)
	started := time.Now()
	const chunk = 250_000 // claims per statement
	type span struct{ from, to int64 }
	spans := make(chan span)
	go func() {
		defer close(spans)
		for from := first; from <= last; from += chunk {
			spans <- span{from, min(from+chunk-1, last)}
		}
	}()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		fkOff    atomic.Bool
	)
	for range 2 { // two statements at a time: one per core
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, s.dbURL)
			if err == nil {
				defer conn.Close(context.Background())
				// The generated lines reference claims inserted just before by
				// construction; as superuser, skip the per-row foreign-key checks.
				if _, e := conn.Exec(ctx, "SET session_replication_role = replica"); e == nil {
					fkOff.Store(true)
				}
			}
			for sp := range spans {
				if err == nil {
					_, err = conn.Exec(ctx, preloadClaimsSQL, sp.from, sp.to)
				}
				if err == nil {
					_, err = conn.Exec(ctx, preloadLinesSQL, sp.from, sp.to, s.sc.Providers)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("preload: %w", firstErr)
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{preloadTotalsSQL, "VACUUM ANALYZE provider_totals", "ANALYZE claims", "ANALYZE claim_lines"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("preload: %s: %w", strings.Fields(q)[0], err)
		}
	}
	s.preloaded = last * 4
	st.PreloadSeconds = time.Since(started).Seconds()
	st.PreloadNote = "bulk INSERT ... SELECT generate_series, 2 connections, then provider_totals from the lines (GROUP BY) and VACUUM ANALYZE"
	if !fkOff.Load() {
		st.PreloadNote += " (foreign-key checks on: the role is not superuser)"
	}
	s.logf("preloaded in %.1f s", st.PreloadSeconds)
	return nil
}

// Copies of the real tables with the same columns, constraints and indexes,
// so the ceilings write the rows claimd writes without touching its data.
var ceilingTablesSQL = []string{
	`CREATE TABLE ceiling_claims (LIKE claims INCLUDING ALL)`,
	`CREATE TABLE ceiling_claim_lines (LIKE claim_lines INCLUDING ALL)`,
	`ALTER TABLE ceiling_claim_lines ADD FOREIGN KEY (claim_id) REFERENCES ceiling_claims (id) ON DELETE CASCADE`,
	`CREATE TABLE ceiling_provider_totals (LIKE provider_totals INCLUDING ALL)`,
}

const (
	ceilingClaimsSQL = `
INSERT INTO ceiling_claims (id, client_scope, external_id, request_hash, received_at, net_fee_cents, line_count)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::bigint[], $7::int[])
ON CONFLICT (client_scope, external_id) WHERE external_id IS NOT NULL DO NOTHING`
	ceilingLinesSQL = `
INSERT INTO ceiling_claim_lines (claim_id, line_no, service_date, submitted_procedure, quadrant, plan_group,
    subscriber, provider_npi, provider_fees_cents, allowed_fees_cents, member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT l.claim_id, l.line_no, l.service_date, l.procedure, NULLIF(l.quadrant, ''), l.plan_group, l.subscriber, l.npi,
       l.fees, l.allowed, l.coins, l.copay, l.net
FROM unnest($1::uuid[], $2::int[], $3::date[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])
     AS l(claim_id, line_no, service_date, procedure, quadrant, plan_group, subscriber, npi, fees, allowed, coins, copay, net)`
	ceilingTotalsSQL = `
INSERT INTO ceiling_provider_totals AS t (provider_npi, total_net_fee_cents, version)
SELECT npi, fee, 1 FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS d(npi, fee, ord)
ORDER BY ord
ON CONFLICT (provider_npi) DO UPDATE
SET total_net_fee_cents = t.total_net_fee_cents + excluded.total_net_fee_cents, version = t.version + 1, updated_at = now()
RETURNING provider_npi, total_net_fee_cents, version`
)

// claimRows are claims as the arrays the set-based statements take.
type claimRows struct {
	ids                                  []uuid.UUID
	scopes, exts                         []string
	hashes                               [][]byte
	received                             []time.Time
	nets                                 []int64
	counts                               []int32
	lineClaim                            []uuid.UUID
	lineNo                               []int32
	dates                                []time.Time
	procs, quads, plans, subs, npis      []string
	fees, allowed, coins, copays, netFee []int64
}

func (r *claimRows) add(c *loadkit.Claim) {
	id, _ := uuid.NewV7()
	sum := sha256.Sum256([]byte(c.ExternalID))
	r.ids, r.scopes, r.exts, r.hashes = append(r.ids, id), append(r.scopes, ""), append(r.exts, c.ExternalID), append(r.hashes, sum[:])
	r.received, r.nets, r.counts = append(r.received, time.Now()), append(r.nets, c.NetFee()), append(r.counts, int32(len(c.Lines)))
	for i, l := range c.Lines {
		d, _ := time.Parse(time.DateOnly, l.ServiceDate)
		r.lineClaim, r.lineNo, r.dates = append(r.lineClaim, id), append(r.lineNo, int32(i)), append(r.dates, d)
		r.procs, r.quads, r.plans = append(r.procs, l.Procedure), append(r.quads, l.Quadrant), append(r.plans, l.PlanGroup)
		r.subs, r.npis = append(r.subs, l.Subscriber), append(r.npis, l.NPI)
		r.fees, r.allowed, r.coins = append(r.fees, l.Fees), append(r.allowed, l.Allowed), append(r.coins, l.Coinsurance)
		r.copays, r.netFee = append(r.copays, l.Copay), append(r.netFee, l.NetFee())
	}
}

func (r *claimRows) queue(b *pgx.Batch) {
	b.Queue(ceilingClaimsSQL, r.ids, r.scopes, r.exts, r.hashes, r.received, r.nets, r.counts)
	b.Queue(ceilingLinesSQL, r.lineClaim, r.lineNo, r.dates, r.procs, r.quads, r.plans, r.subs, r.npis,
		r.fees, r.allowed, r.coins, r.copays, r.netFee)
}

// ceilings measures Postgres alone, writing the rows claimd writes (the
// same generator's 4-line claims) into copies of its tables.
func (s *suite) ceilings(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range ceilingTablesSQL {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("ceiling tables: %w", err)
		}
	}
	defer func() {
		for _, t := range []string{"ceiling_claim_lines", "ceiling_claims", "ceiling_provider_totals"} {
			_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+t)
		}
	}()
	c := &s.res.Ceilings
	pool := loadkit.NPIPool(s.sc.NPIs)

	// Set-based: 250 claims and their 1000 lines per transaction, both with
	// INSERT ... SELECT FROM unnest, pipelined in one round trip.
	s.logf("Postgres ceiling: set-based insert, 1000 lines per statement, %d connections, %s", s.sc.CeilingConn, s.sc.CeilingDur)
	c.SetConns = s.sc.CeilingConn
	var seq atomic.Int64
	lines, elapsed, lat, err := s.pgWorkers(ctx, s.sc.CeilingConn, s.sc.CeilingDur, func(w int) func(conn *pgx.Conn) (int64, error) {
		gen := loadkit.NewGenerator(int64(1000+w), pool, 1.1, 4)
		gen.FixLines(4)
		return func(conn *pgx.Conn) (int64, error) {
			var rows claimRows
			for range 250 {
				rows.add(gen.Claim(fmt.Sprintf("ceil-set-%d", seq.Add(1))))
			}
			b := &pgx.Batch{}
			rows.queue(b) // one implicit transaction: the batch ends with one Sync
			return int64(len(rows.lineNo)), conn.SendBatch(ctx, b).Close()
		}
	})
	if err != nil {
		return fmt.Errorf("set-based ceiling: %w", err)
	}
	c.SetLinesPerSec = float64(lines) / elapsed.Seconds()
	c.SetP99 = lat.P99

	// One claim per transaction, as claimd does it: the claim, its 4 lines
	// and its providers' totals (upserted in NPI order, RETURNING the new
	// versions), pipelined in one round trip: the best one claim per commit
	// can do.
	s.logf("Postgres ceiling: one claim per transaction, %d clients, %s", s.sc.PerTxConn, s.sc.CeilingDur)
	c.TxClients = s.sc.PerTxConn
	lines, elapsed, lat, err = s.pgWorkers(ctx, s.sc.PerTxConn, s.sc.CeilingDur, func(w int) func(conn *pgx.Conn) (int64, error) {
		gen := loadkit.NewGenerator(int64(2000+w), pool, 1.1, 4)
		gen.FixLines(4)
		return func(conn *pgx.Conn) (int64, error) {
			cl := gen.Claim(fmt.Sprintf("ceil-tx-%d", seq.Add(1)))
			var rows claimRows
			rows.add(cl)
			per := map[string]int64{}
			for _, l := range cl.Lines {
				per[l.NPI] += l.NetFee()
			}
			npis := slices.Sorted(maps.Keys(per))
			fees := make([]int64, len(npis))
			for i, n := range npis {
				fees[i] = per[n]
			}
			b := &pgx.Batch{}
			rows.queue(b)
			b.Queue(ceilingTotalsSQL, npis, fees)
			return int64(len(cl.Lines)), conn.SendBatch(ctx, b).Close()
		}
	})
	if err != nil {
		return fmt.Errorf("per-claim ceiling: %w", err)
	}
	c.TxLinesPerSec = float64(lines) / elapsed.Seconds()
	c.TxClaimsPerSec = c.TxLinesPerSec / 4
	c.TxP99 = lat.P99
	s.logf("ceilings: set-based %.0f lines/s; per-claim %.0f claims/s (%.0f lines/s)", c.SetLinesPerSec, c.TxClaimsPerSec, c.TxLinesPerSec)
	return nil
}

// pgWorkers runs n workers, each on its own connection, calling its step
// until d has passed; it returns the rows the steps wrote and how long.
func (s *suite) pgWorkers(ctx context.Context, n int, d time.Duration, mk func(w int) func(*pgx.Conn) (int64, error)) (int64, time.Duration, Latency, error) {
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := pgx.Connect(ctx, s.dbURL)
		if err != nil {
			return 0, 0, Latency{}, err
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	var (
		total atomic.Int64
		mu    sync.Mutex
		errs  []error
		lats  []time.Duration
		wg    sync.WaitGroup
	)
	started := time.Now()
	deadline := started.Add(d)
	for i, c := range conns {
		step := mk(i)
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				rows, err := step(c)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
				total.Add(rows)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total.Load(), time.Since(started), latencies(lats), errors.Join(errs...)
}

// redisRaw measures ZREVRANGE key 0 9 WITHSCORES on the ranking itself, with
// a Go client and with redis-benchmark when it is installed.
func (s *suite) redisRaw(ctx context.Context, st *stageResult) error {
	key := rank.Keys{Prefix: s.redisPrefix}.Ranking()
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
	keys := rank.Keys{Prefix: s.redisPrefix}
	n, err1 := rdb.ZCard(ctx, keys.Ranking()).Result()
	zset, err2 := rdb.MemoryUsage(ctx, keys.Ranking(), 0).Result()
	gen, err3 := rdb.Get(ctx, keys.Generation()).Result()
	gen, _, _ = strings.Cut(gen, "/")
	hashes, versions, err4 := memoryOfKeys(ctx, rdb, keys.VersionsPrefix()+gen+":*")
	if err := errors.Join(err1, err2, err3, err4); err != nil || n == 0 {
		st.RedisMemNote = fmt.Sprintf("could not read: %v (%d members)", err, n)
		return
	}
	st.RedisProviders, st.RedisZsetBytes, st.RedisHashBytes, st.RedisHashes = n, zset, versions, hashes
	st.RedisBytesPerProvider = float64(zset+versions) / float64(n)
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

// bench runs claimbench in-process with -json and returns its report.
func (s *suite) bench(ctx context.Context, name string, args ...string) (*Report, error) {
	return s.runBench(ctx, name, false, runHooks{}, args...)
}

// benchHooked is bench with hooks between the phases of the run.
func (s *suite) benchHooked(ctx context.Context, name string, hooks runHooks, args ...string) (*Report, error) {
	return s.runBench(ctx, name, false, hooks, args...)
}

// asMainEnv makes a test binary of this package run as claimbench (see
// TestMain), so that benchApart works under go test too.
const asMainEnv = "CLAIMBENCH_AS_MAIN"

// benchApart is bench in a claimbench process of its own, for a load
// measured beside another: in one process, the other load's garbage
// collection and goroutines would be counted in this one's latencies.
func (s *suite) benchApart(ctx context.Context, name string, args ...string) (*Report, error) {
	return s.runBench(ctx, name, true, runHooks{}, args...)
}

func (s *suite) runBench(ctx context.Context, name string, apart bool, hooks runHooks, args ...string) (*Report, error) {
	var out, errOut bytes.Buffer
	args = append(args, "-json", "-progress=false")
	var err error
	if apart {
		self, xerr := os.Executable()
		if xerr != nil {
			return nil, fmt.Errorf("claimbench %s: %w", name, xerr)
		}
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.Env = append(os.Environ(), asMainEnv+"=1")
		err = cmd.Run()
	} else {
		err = runWith(ctx, args, &out, &errOut, hooks)
	}
	if err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("claimbench %s: %w: %s", name, err, errOut.String())
	}
	var rep Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		return nil, fmt.Errorf("claimbench %s: report: %w", name, jerr)
	}
	if rep.Verification != nil {
		s.res.Verifications = append(s.res.Verifications, verification{
			Run: name, Passed: rep.Verification.Passed, Problems: rep.Verification.ProblemCount,
			Acked: rep.Verification.ClaimsAcked, Refused: rep.Verification.ClaimsRefused,
			Unknown: rep.Verification.ClaimsUnknown, FirstProblems: rep.Verification.Problems,
		})
	}
	return &rep, nil
}

func (s *suite) ingestArgs(p *claimdProc, seed int) []string {
	return []string{"-url", p.url, "-lines", "4", "-npis", strconv.Itoa(s.sc.NPIs), "-seed", strconv.Itoa(seed),
		"-database-url", s.dbURL, "-redis-url", s.cfg.RedisURL, "-redis-prefix", s.redisPrefix,
		"-verify-api-max", strconv.Itoa(s.sc.VerifyAPI)}
}

func (s *suite) lookups(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("/top-providers from Redis: %d clients, %s", s.sc.LookupConc, s.sc.LookupDur)
	rep, err := s.bench(ctx, st.label()+" top (redis)", "-url", p.url, "-mode", "top", "-concurrency", strconv.Itoa(s.sc.LookupConc),
		"-duration", s.sc.LookupDur.String(), "-verify=false")
	if err != nil {
		return err
	}
	st.Lookup = rep
	st.LookupSource = s.checkAnswer(ctx, p, "redis")
	return nil
}

// checkAnswer reads top-10 once and compares it with Postgres: "" when the
// answer comes from the expected source and equals the truth.
func (s *suite) checkAnswer(ctx context.Context, p *claimdProc, source string) string {
	truth, err := s.trueTop(ctx, 10)
	if err != nil {
		return err.Error()
	}
	got, src, err := loadkit.GetTop(ctx, http.DefaultClient, p.url, "", 10)
	switch {
	case err != nil:
		return err.Error()
	case src != source:
		return fmt.Sprintf("answered from %s, expected %s", src, source)
	case !slices.Equal(got, truth):
		return fmt.Sprintf("answer %v differs from Postgres %v", got, truth)
	}
	return ""
}

func (s *suite) trueTop(ctx context.Context, n int) ([]loadkit.ProviderTotal, error) {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, trueTopSQL, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (loadkit.ProviderTotal, error) {
		var t loadkit.ProviderTotal
		err := r.Scan(&t.NPI, &t.Cents)
		return t, err
	})
}

// profile saves a CPU profile of claimd while fn runs, with -pprof-dir.
func (s *suite) profile(ctx context.Context, p *claimdProc, name string, d time.Duration, fn func() error) error {
	if p.pprof == "" || d < 3*time.Second {
		return fn()
	}
	secs := int((d - time.Second).Seconds())
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := filepath.Join(s.cfg.PprofDir, "claimd-"+name+".pprof")
		if err := os.MkdirAll(s.cfg.PprofDir, 0o755); err != nil {
			return
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprof, secs))
		if err != nil {
			s.logf("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
		s.logf("CPU profile of claimd saved to %s", path)
	}()
	err := fn()
	<-done
	return err
}

func (s *suite) single(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("single-claim ingest: %d clients, 4-line claims, %s", s.sc.SingleConc, s.sc.SingleDur)
	return s.profile(ctx, p, st.label()+"-single", s.sc.SingleDur, func() error {
		rep, err := s.bench(ctx, st.label()+" single", append(s.ingestArgs(p, 11), "-mode", "single",
			"-concurrency", strconv.Itoa(s.sc.SingleConc), "-duration", s.sc.SingleDur.String())...)
		st.Single = rep
		return err
	})
}

func (s *suite) halfRate(ctx context.Context, p *claimdProc, st *stageResult) error {
	st.HalfRate = st.Single.ClaimsPerSec / 2
	if st.HalfRate < 1 {
		return fmt.Errorf("single-claim ingest measured %.1f claims/s: nothing to halve", st.Single.ClaimsPerSec)
	}
	s.logf("single-claim ingest at half its maximum (%.0f claims/s, open loop) with lookups at %.0f/s, %s", st.HalfRate, s.sc.LookupRate, s.sc.HalfDur)
	var (
		wg           sync.WaitGroup
		ingErr, lErr error
	)
	wg.Go(func() {
		st.Half, ingErr = s.bench(ctx, st.label()+" single at half rate", append(s.ingestArgs(p, 12), "-mode", "single",
			"-rate", strconv.FormatFloat(st.HalfRate, 'f', 1, 64), "-max-in-flight", "256", "-duration", s.sc.HalfDur.String())...)
	})
	wg.Go(func() {
		st.HalfLookup, lErr = s.benchApart(ctx, st.label()+" top during ingest", "-url", p.url, "-mode", "top",
			"-rate", strconv.FormatFloat(s.sc.LookupRate, 'f', 1, 64), "-max-in-flight", "256",
			"-duration", s.sc.HalfDur.String(), "-verify=false")
	})
	wg.Wait()
	return errors.Join(ingErr, lErr)
}

func (s *suite) batch(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("batch ingest: %d claims per request, %d clients, %s", s.sc.BatchSize, s.sc.BatchConc, s.sc.BatchDur)
	probeCfg := config{URL: p.url, Timeout: 10 * time.Second, Concurrency: 1}
	if err := probeBatch(ctx, newHTTPClient(probeCfg), probeCfg); errors.Is(err, errNoBatchEndpoint) {
		st.BatchSkipped = "claimd does not serve POST /claims/batch"
		s.logf("batch ingest skipped: %s", st.BatchSkipped)
		return nil
	}
	return s.profile(ctx, p, st.label()+"-batch", s.sc.BatchDur, func() error {
		rep, err := s.bench(ctx, st.label()+" batch", append(s.ingestArgs(p, 13), "-mode", "batch",
			"-batch-size", strconv.Itoa(s.sc.BatchSize), "-concurrency", strconv.Itoa(s.sc.BatchConc),
			"-duration", s.sc.BatchDur.String())...)
		if errors.Is(err, errNoBatchEndpoint) {
			st.BatchSkipped = "claimd does not serve POST /claims/batch"
			s.logf("batch ingest skipped: %s", st.BatchSkipped)
			return nil
		}
		st.Batch = rep
		return err
	})
}

// rebuild times `claimd reconcile --full` while lookups run against claimd,
// each answer compared with the true top-10 from Postgres (nothing writes
// meanwhile, so the truth is fixed).
func (s *suite) rebuild(ctx context.Context, p *claimdProc, st *stageResult) error {
	truth, err := s.trueTop(ctx, 10)
	if err != nil {
		return err
	}
	s.logf("full Redis rebuild (claimd reconcile --full) of %d providers under lookups", s.sc.Providers)
	r := &st.Rebuild
	stop := make(chan struct{})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lats []time.Duration
	)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var lookups, errs, mismatches, fromRedis, fromPG atomic.Int64
	for range 8 {
		wg.Go(func() {
			var mine []time.Duration
			for {
				select {
				case <-stop:
					mu.Lock()
					lats = append(lats, mine...)
					mu.Unlock()
					return
				default:
				}
				t := time.Now()
				got, src, err := loadkit.GetTop(ctx, client, p.url, "", 10)
				mine = append(mine, time.Since(t))
				lookups.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case !slices.Equal(got, truth):
					mismatches.Add(1)
				}
				switch src {
				case "redis":
					fromRedis.Add(1)
				case "postgres":
					fromPG.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // lookups before, during and after
	started := time.Now()
	out, err := s.claimdCommand(ctx, s.redisURL(), "reconcile", "--full")
	r.Seconds = time.Since(started).Seconds()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	r.Lookups, r.Errors, r.Mismatches = lookups.Load(), errs.Load(), mismatches.Load()
	r.FromRedis, r.FromPostgres = fromRedis.Load(), fromPG.Load()
	r.Latency = latencies(lats)
	if err != nil {
		// Reported in the table; the measurements after it still run.
		r.Error = err.Error()
		s.logf("rebuild failed after %.2f s: %s", r.Seconds, r.Error)
		return nil
	}
	var res struct {
		Rebuilt   bool   `json:"rebuilt"`
		Providers int64  `json:"providers"`
		Duration  string `json:"duration"`
		Skipped   bool   `json:"skipped"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return fmt.Errorf("claimd reconcile --full printed %q: %w", out, err)
	}
	if d, err := time.ParseDuration(res.Duration); err == nil {
		r.Reported = d.Seconds()
	}
	r.Providers, r.Rebuilt, r.Skipped = res.Providers, res.Rebuilt, res.Skipped
	s.logf("rebuild: %.2f s (claimd says %s), %d providers; %d lookups, %d errors, %d wrong", r.Seconds, res.Duration, r.Providers, r.Lookups, r.Errors, r.Mismatches)
	return nil
}

func (s *suite) fallback(ctx context.Context, p *claimdProc, st *stageResult) error {
	s.logf("/top-providers from the Postgres fallback (Redis: nothing listening), %d clients, %s", s.sc.LookupConc, s.sc.LookupDur)
	before := s.checkAnswer(ctx, p, "postgres")
	rep, err := s.bench(ctx, st.label()+" top (postgres fallback)", "-url", p.url, "-mode", "top", "-concurrency", strconv.Itoa(s.sc.LookupConc),
		"-duration", s.sc.LookupDur.String(), "-verify=false")
	if err != nil {
		return err
	}
	st.Fallback = rep
	// Latency without queueing behind 32 clients: an open loop at the
	// lookup rate used during ingest.
	s.logf("/top-providers from the Postgres fallback at %.0f/s (open loop), %s", s.sc.LookupRate, s.sc.LookupDur/2)
	st.FallbackAtRate, err = s.bench(ctx, st.label()+" top (postgres fallback) at fixed rate", "-url", p.url, "-mode", "top",
		"-rate", strconv.FormatFloat(s.sc.LookupRate, 'f', 1, 64), "-max-in-flight", "256",
		"-duration", (s.sc.LookupDur / 2).String(), "-verify=false")
	if err != nil {
		return err
	}
	st.FallbackCheck = cmp.Or(before, s.checkAnswer(ctx, p, "postgres"))
	return nil
}

// micro runs the go test micro-benchmarks (Redis against a GROUP BY over
// the lines) and formats them with scripts/bench-report.awk.
func (s *suite) micro(ctx context.Context) {
	s.logf("micro-benchmarks: go test -bench (about 40 s)")
	raw := filepath.Join(s.cfg.LogDir, "bench.txt")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchtime", "2s", "-count", "1", "-v", "./...")
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(raw, out, 0o644)
	if err != nil {
		s.res.MicroNote = fmt.Sprintf("go test -bench exited with %v (raw output in %s); the benchmarks that ran are listed", err, raw)
	}
	awk := exec.CommandContext(ctx, "awk", "-f", "scripts/bench-report.awk", raw)
	table, aerr := awk.Output()
	if aerr != nil {
		s.res.MicroNote = cmp.Or(s.res.MicroNote, fmt.Sprintf("awk -f scripts/bench-report.awk: %v (raw output in %s)", aerr, raw))
		return
	}
	s.res.Micro = string(table)
}
