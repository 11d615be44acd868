package faulttest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/testenv"
)

// TestMain builds claimd once for every test. The FAULTS scenarios skip
// unless FAULTS=1, but the async-mode proofs (async_test.go) always run, so
// the build is always done (go build's cache makes it quick).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faulttest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faulttest:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if err := buildClaimd(filepath.Join(dir, "claimd")); err != nil {
			fmt.Fprintln(os.Stderr, "faulttest: build claimd:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// buildClaimd builds ./cmd/claimd from the module root into path.
func buildClaimd(path string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", path, "./cmd/claimd")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	ClaimdBinary = path
	return nil
}

func requireFaults(t *testing.T) {
	t.Helper()
	if os.Getenv("FAULTS") != "1" {
		t.Skip("fault-injection suite: runs only with FAULTS=1 (make test-faults)")
	}
}

// setup is one claimd on a fresh database of the shared Postgres and a
// redis-server of the test's own: enough for every scenario that does not
// stop Postgres.
func setup(t *testing.T) (*Claimd, *testenv.RedisServer, System) {
	t.Helper()
	return setupOn(t, testenv.MustDatabase(t))
}

// setupOn is setup on the database at db: one of the test's own Postgres
// servers, for the scenarios that stop them (claimd creates the database).
func setupOn(t *testing.T, db string) (*Claimd, *testenv.RedisServer, System) {
	t.Helper()
	rs := testenv.MustRedisServer(t)
	cd := StartClaimd(t, "claimd", ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL()})
	return cd, rs, System{DatabaseURL: db, Redis: rs.Client(), API: cd.BaseURL()}
}

// requireEveryClaimAnswered: each outage the suite causes is shorter than a
// client's retry budget (45s, see NewSender), so every valid claim must end
// up acknowledged; a refusal of a valid claim is always a defect.
func requireEveryClaimAnswered(t *testing.T, load *Load) {
	t.Helper()
	var refused, unknown []string
	for _, c := range load.Claims {
		switch c.Outcome() {
		case loadkit.Refused:
			status, body := c.Refusal()
			refused = append(refused, fmt.Sprintf("%s (%d: %s)", c.ExternalID, status, body))
		case loadkit.Unknown:
			unknown = append(unknown, fmt.Sprintf("%s (key %q; answers %v)", c.ExternalID, c.Key, c.History()))
		}
	}
	assert.Empty(t, refused, "valid claims refused")
	assert.Empty(t, unknown, "claims never answered within the retry budget")
}

// finish reports the scenario, checks that claimd's own drift gauge agrees
// that Redis is exact, and stops claimd gracefully: SIGTERM must exit 0.
func finish(t *testing.T, cd *Claimd, scenario string, load *Load, report Report) {
	t.Helper()
	LogReport(t, scenario, load, report)
	cd.LogMetrics()
	if _, ok := cd.Metric("claimd_ranking_drift_cents"); ok {
		// The gauge is set by each reconciliation pass (every second here).
		waitFor(t, 5*time.Second, "claimd_ranking_drift_cents to be 0", func() error {
			if v, _ := cd.Metric("claimd_ranking_drift_cents"); v != 0 {
				return fmt.Errorf("claimd_ranking_drift_cents is %g", v)
			}
			return nil
		})
	}
	cd.Terminate()
}

// Scenario 1: claimd is SIGKILLed three times under load and restarted each
// time. Requests cut off by the kill are retried with the same claim_id (and
// key); none may be lost or stored twice.
func TestClaimdKilledUnderLoad(t *testing.T) {
	requireFaults(t)
	cd, _, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 1200, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	for i, at := range []float64{0.2, 0.45, 0.7} {
		load.WaitFraction(at)
		cd.Kill()
		t.Logf("kill %d: SIGKILL after %d claims finished", i+1, load.finished.Load())
		time.Sleep(300 * time.Millisecond) // let clients meet the closed port
		cd.Start()
	}
	load.Wait()

	report := Verify(t, sys, load)
	requireEveryClaimAnswered(t, load)
	finish(t, cd, "1 (claimd SIGKILL x3)", load, report)
}

// Scenario 1b (a rolling restart): claimd is stopped with SIGTERM
// under load twice and started again. Each stop must drain the requests in
// flight and exit 0; clients see refused connections while it is down, but
// no 5xx other than a 503 with Retry-After.
func TestClaimdRollingRestartUnderLoad(t *testing.T) {
	requireFaults(t)
	cd, _, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	for i, at := range []float64{0.3, 0.6} {
		load.WaitFraction(at)
		cd.Terminate()
		t.Logf("restart %d: SIGTERM after %d claims finished, exit 0", i+1, load.finished.Load())
		cd.Start()
	}
	load.Wait()

	report := Verify(t, sys, load)
	requireEveryClaimAnswered(t, load)
	s := load.Sender.Stats
	assert.Zero(t, s.Other5xx.Load(), "5xx answers other than 503 with Retry-After")
	assert.Zero(t, s.NoRetryAfter.Load(), "503/409 answers without Retry-After")
	finish(t, cd, "1b (claimd SIGTERM x2, rolling restart)", load, report)
}

// Scenario 2a: Redis is killed under load and restarted empty. Ingestion
// must not notice (Redis is not the truth), and reconciliation must rebuild
// the ranking exactly without a restart of claimd.
func TestRedisKilledAndRestartedEmpty(t *testing.T) {
	requireFaults(t)
	cd, rs, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	load.WaitFraction(0.3)
	rs.Stop()
	t.Logf("redis killed after %d claims finished", load.finished.Load())
	time.Sleep(time.Second) // load goes on against a Redis that refuses connections
	rs.Start()
	t.Logf("redis restarted empty after %d claims finished", load.finished.Load())
	load.Wait()

	report := Verify(t, sys, load)
	requireRedisFaultInvisible(t, load)
	finish(t, cd, "2a (Redis killed, restarted empty)", load, report)
}

// Scenario 2b: Redis loses everything (FLUSHALL) under load while it stays up.
func TestRedisFlushedUnderLoad(t *testing.T) {
	requireFaults(t)
	cd, rs, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	load.WaitFraction(0.4)
	rs.FlushAll()
	t.Logf("redis flushed after %d claims finished", load.finished.Load())
	load.Wait()

	report := Verify(t, sys, load)
	requireRedisFaultInvisible(t, load)
	finish(t, cd, "2b (Redis FLUSHALL)", load, report)
}

// Scenario 2c: Redis hangs (SIGSTOP) for 2s, longer than claimd's Redis
// timeouts (500ms), then continues. Writes that timed out may or may not
// have been applied; the versioned writes and reconciliation must make the
// ranking exact either way.
func TestRedisPausedUnderLoad(t *testing.T) {
	requireFaults(t)
	cd, rs, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	load.WaitFraction(0.3)
	rs.Pause()
	t.Logf("redis paused after %d claims finished", load.finished.Load())
	time.Sleep(2 * time.Second)
	rs.Resume()
	t.Logf("redis resumed after %d claims finished", load.finished.Load())
	load.Wait()

	report := Verify(t, sys, load)
	requireRedisFaultInvisible(t, load)
	finish(t, cd, "2c (Redis SIGSTOP 2s)", load, report)
}

// requireRedisFaultInvisible: Redis is only the ranking, so while it is
// down or hung ingestion goes on: every claim is acknowledged and no answer
// is a 5xx.
func requireRedisFaultInvisible(t *testing.T, load *Load) {
	t.Helper()
	requireEveryClaimAnswered(t, load)
	s := load.Sender.Stats
	assert.Zero(t, s.Unavailable.Load()+s.Other5xx.Load(), "5xx answers while only Redis failed")
	var slow []string
	for _, c := range load.Claims {
		for _, h := range c.History() {
			if strings.Contains(h, "no answer") {
				slow = append(slow, c.ExternalID+": "+strings.Join(c.History(), ", "))
				break
			}
		}
	}
	assert.Empty(t, slow, "requests without an answer while only Redis failed")
}

// Scenario 3: Postgres (the suite's own) is stopped with a fast shutdown
// under load and started again 2s later. claimd must answer 503 with
// Retry-After meanwhile, fast, keep running, and recover by itself.
func TestPostgresRestartedUnderLoad(t *testing.T) {
	requireFaults(t)
	pg := StartPostgres(t)
	cd, _, sys := setupOn(t, pg.URL("claims"))

	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	load.WaitFraction(0.3)
	pg.Stop()
	t.Logf("postgres stopped after %d claims finished", load.finished.Load())
	time.Sleep(2 * time.Second)
	pg.Start()
	t.Logf("postgres started again after %d claims finished", load.finished.Load())
	load.Wait()

	require.True(t, cd.Running(), "claimd must survive a Postgres restart")
	report := Verify(t, sys, load)
	requireEveryClaimAnswered(t, load)
	s := load.Sender.Stats
	assert.Zero(t, s.Other5xx.Load(), "5xx answers other than 503 with Retry-After")
	assert.Zero(t, s.NoRetryAfter.Load(), "503/409 answers without Retry-After")
	assert.Less(t, s.Slowest5xx(), 5*time.Second, "a 5xx must come fast, not when the client is about to give up")
	t.Logf("503 answers: %d, slowest 5xx took %s", s.Unavailable.Load(), s.Slowest5xx().Round(time.Millisecond))
	finish(t, cd, "3 (Postgres fast shutdown, restart)", load, report)
}

// Scenario 8: the Postgres primary crashes under load and its synchronous
// standby is promoted. claimd, given both hosts with
// target_session_attrs=read-write, finds the new primary on its own; with
// synchronous replication a commit is acknowledged only once the standby
// has it, so no claim acknowledged before the crash may be missing from the
// new primary, and Redis, written only after a commit, is never ahead of it.
func TestPostgresFailoverToSynchronousStandby(t *testing.T) {
	requireFaults(t)
	primary := StartPostgres(t, "synchronous_standby_names=*")
	standby := primary.StartStandby()
	cd, _, sys := setupOn(t, FailoverURL("claims", primary, standby)) // created on the primary, replicated

	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	load.WaitFraction(0.3)
	primary.Crash()
	t.Logf("primary crashed after %d claims finished", load.finished.Load())
	time.Sleep(time.Second)
	standby.Promote()
	t.Logf("standby promoted after %d claims finished", load.finished.Load())
	load.Wait()

	require.True(t, cd.Running(), "claimd must survive a failover")
	report := Verify(t, sys, load) // against the new primary: every acknowledged claim, once
	requireEveryClaimAnswered(t, load)
	s := load.Sender.Stats
	assert.Zero(t, s.Other5xx.Load(), "5xx answers other than 503 with Retry-After")
	t.Logf("503 answers: %d, slowest 5xx took %s", s.Unavailable.Load(), s.Slowest5xx().Round(time.Millisecond))
	finish(t, cd, "8 (Postgres primary crashed, synchronous standby promoted)", load, report)
}

// Scenario 9: asynchronous replication loses commits in a failover. The
// standby stops, so the primary acknowledges claims alone; then the primary
// crashes and the stopped standby, started again, is promoted without them.
// Those claims are lost, as asynchronous replication allows, and Redis holds
// their totals, with versions ahead of the new primary's. The new timeline
// names another ranking: lookups answer from Postgres at once, and the next
// reconciliation pass rebuilds Redis from the new primary, after which the
// ranking must be exactly its totals again.
func TestPostgresFailoverLosingCommits(t *testing.T) {
	requireFaults(t)
	primary := StartPostgres(t) // asynchronous: no synchronous_standby_names
	standby := primary.StartStandby()
	cd, _, sys := setupOn(t, FailoverURL("claims", primary, standby))
	db := sys.DatabaseURL
	run := func(claims int) *Load {
		load := NewLoad(t, LoadConfig{Claims: claims, Clients: 8})
		load.Start(cd.BaseURL())
		load.Wait()
		requireEveryClaimAnswered(t, load)
		return load
	}

	kept := run(300)
	primary.WaitReplayed()
	standby.Stop()
	lost := run(300) // acknowledged by the primary alone
	primary.Crash()
	standby.Start()
	standby.Promote()
	promoted := time.Now()
	after := run(300)

	claimIDs := func(l *Load) []string { // each acknowledged (requireEveryClaimAnswered)
		out := make([]string, len(l.Claims))
		for i, c := range l.Claims {
			out[i] = c.ExternalID
		}
		return out
	}
	missing, err := missingClaims(db, claimIDs(lost))
	require.NoError(t, err)
	require.Len(t, missing, len(lost.Claims), "every claim acknowledged while the standby was stopped is lost")
	for name, l := range map[string]*Load{"replicated before the failover": kept, "stored after it": after} {
		missing, err = missingClaims(db, claimIDs(l))
		require.NoError(t, err)
		require.Empty(t, missing, "claims %s: %d of %d missing", name, len(missing), len(l.Claims))
	}

	var totals map[string]int64
	waitFor(t, 30*time.Second, "the ranking to equal the new primary's totals", func() error {
		pg, err := readPostgres(db)
		if err != nil {
			return err
		}
		ranking, err := readRanking(sys)
		if err != nil {
			return err
		}
		if !maps.Equal(pg.totals, ranking) {
			return fmt.Errorf("%d providers in Postgres, %d in Redis, not all equal", len(pg.totals), len(ranking))
		}
		top, source, err := loadkit.GetTop(t.Context(), http.DefaultClient, cd.BaseURL(), "", 10)
		if err != nil {
			return err
		}
		if want := loadkit.TopN(pg.totals, 10); source != "redis" || !slices.Equal(top, want) {
			return fmt.Errorf("/top-providers from %s: %v, want %v", source, top, want)
		}
		totals = pg.totals
		return nil
	})
	t.Logf("scenario 9 (asynchronous standby promoted without the last %d claims): the ranking equal to the new primary's %d provider totals %s after the promotion",
		len(lost.Claims), len(totals), time.Since(promoted).Round(100*time.Millisecond))
	cd.LogMetrics()
	cd.Terminate()
}

// Scenario 4: every claim is sent at least twice, some copies at once, half
// of them with an Idempotency-Key. Exactly one copy of each may be stored;
// with a key, every answer after the first is a replay of it.
func TestRetriesAndDuplicates(t *testing.T) {
	requireFaults(t)
	cd, _, sys := setup(t)
	plans := []Plan{
		{1, 1}, // a retry after the answer
		{3},    // three copies at once
		{2, 1}, // two at once, then a late retry
		{1, 2}, // a retry racing a retry
	}
	load := NewLoad(t, LoadConfig{Claims: 400, Clients: 8, KeyShare: 0.5,
		Plan: func(i int) Plan { return plans[i%len(plans)] }})
	load.Start(cd.BaseURL())
	load.Wait()

	// 50 copies of one claim at once, with a key and without.
	for _, key := range []string{"", "storm-key"} {
		storm := load.Extra("storm"+key, key)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() { load.Sender.Send(t.Context(), storm, i) })
		}
		wg.Wait()
	}
	requireEveryClaimAnswered(t, load)

	// A key reused for a different claim is refused (422), and the claim is
	// not stored under it or at all.
	var probes []*Claim
	for _, c := range load.Claims {
		if c.Key != "" && len(probes) < 10 {
			probe := load.Extra(fmt.Sprintf("reuse-%d", len(probes)), c.Key)
			load.Sender.Send(t.Context(), probe, 0)
			probes = append(probes, probe)
		}
	}
	for _, p := range probes {
		status, body := p.Refusal()
		assert.Equal(t, 422, status, "claim %s reusing key %s: want 422, got %d %s", p.ExternalID, p.Key, status, body)
	}

	// With a key, the first answer is fresh and every later one a replay.
	for _, c := range load.Claims {
		if c.Key != "" && c.Outcome() == loadkit.Acked {
			assert.Equal(t, 1, c.FreshAnswers(), "claim %s with key %s: answers not marked Idempotency-Replayed", c.ExternalID, c.Key)
		}
	}

	report := Verify(t, sys, load)
	finish(t, cd, "4 (retries and duplicates)", load, report)
}

// Scenario 5: two claimd instances share Postgres and Redis; load goes to
// both; one is SIGKILLed mid-load. The survivor takes all the load, and its
// reconciliation alone (the dead one's advisory lock is gone with its
// connection) rebuilds the ranking after Redis is flushed.
func TestTwoInstancesOneKilled(t *testing.T) {
	requireFaults(t)
	rs := testenv.MustRedisServer(t)
	db := testenv.MustDatabase(t)
	cfg := ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL()}
	survivor := StartClaimd(t, "claimd-a", cfg)
	victim := StartClaimd(t, "claimd-b", cfg)
	sys := System{DatabaseURL: db, Redis: rs.Client(), API: survivor.BaseURL()}

	load := NewLoad(t, LoadConfig{Claims: 1200, Clients: 12, KeyShare: 0.3})
	load.Start(survivor.BaseURL(), victim.BaseURL())
	load.WaitFraction(0.4)
	victim.Kill()
	t.Logf("claimd-b killed after %d claims finished", load.finished.Load())
	load.Wait()

	passesBefore := reconcilePasses(t, survivor)
	rs.FlushAll()
	t.Log("redis flushed after the load")
	report := Verify(t, sys, load)
	requireEveryClaimAnswered(t, load)
	assert.Greater(t, reconcilePasses(t, survivor), passesBefore, "the survivor must go on reconciling")
	finish(t, survivor, "5 (two instances, one SIGKILLed, then FLUSHALL)", load, report)
}

// reconcilePasses is how many reconciliation passes an instance completed.
func reconcilePasses(t *testing.T, c *Claimd) float64 {
	t.Helper()
	v, ok := c.Metric(`claimd_reconcile_runs_total{result="ok"}`)
	require.True(t, ok, "claimd exposes no claimd_reconcile_runs_total{result=\"ok\"}")
	return v
}

// TestVerifyCatchesCorruption checks the checker: after a clean load passes,
// a claim removed behind the service's back and a provider total off by one
// cent must both be reported.
func TestVerifyCatchesCorruption(t *testing.T) {
	requireFaults(t)
	cd, _, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 100, Clients: 4})
	load.Start(cd.BaseURL())
	load.Wait()
	Verify(t, sys, load)
	cd.Terminate() // nothing may repair what the test breaks next

	conn, err := pgx.Connect(t.Context(), sys.DatabaseURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	victim := load.Claims[0]
	_, err = conn.Exec(t.Context(), `DELETE FROM claims WHERE external_id = $1`, victim.ExternalID)
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `UPDATE provider_totals SET total_net_fee_cents = total_net_fee_cents + 1
		WHERE provider_npi = (SELECT min(provider_npi) FROM provider_totals)`)
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `UPDATE board_totals SET claims = claims + 1
		WHERE (board, provider_npi) = (SELECT board, provider_npi FROM board_totals ORDER BY board DESC, provider_npi LIMIT 1)`)
	require.NoError(t, err)
	// A board in Redis off by one cent, for a claim the test left alone.
	keys := rank.Keys{Prefix: cmp.Or(sys.KeyPrefix, rank.DefaultPrefix), Shards: sys.RankShards}
	other := load.Claims[1].Lines[0]
	board := "a|g:" + other.PlanGroup
	require.NoError(t, sys.Redis.ZIncrBy(t.Context(), keys.Shard(keys.ShardOf(other.NPI)).Board(board), 1, other.NPI).Err())

	sys.API = "http://127.0.0.1:1" // claimd is gone; (e) reports that too
	problems, report := check(sys, load)
	text := strings.Join(problems, "\n")
	assert.Contains(t, text, "(a) acknowledged claim "+victim.ExternalID+" is stored 0 times")
	assert.Contains(t, text, "(c) provider_totals vs SUM(claim_lines)")
	assert.Contains(t, text, "(g) board_totals vs generated lines", "the deleted claim's lines are still counted in its boards")
	assert.Contains(t, text, "(g) board_totals claims vs claims sent")
	assert.Contains(t, text, "(d) Redis score vs provider_totals")
	assert.Contains(t, text, "(h) Redis boards vs generated lines: provider "+board+" "+other.NPI)
	assert.Contains(t, text, "GET /top-providers")
	assert.Positive(t, report.Drift)
}

// Scenario 6: claims sent in POST /claims/batch requests of 50 while claimd
// is SIGKILLed twice. A batch cut off by the kill may be partly stored; the
// client resends every claim without a final answer (same claim_id) in a new
// batch, and each must end stored exactly once.
func TestBatchesWithClaimdKilled(t *testing.T) {
	requireFaults(t)
	cd, _, sys := setup(t)
	load := NewLoad(t, LoadConfig{Claims: 3000, Clients: 4, Batch: 50})
	load.Start(cd.BaseURL())
	for i, at := range []float64{0.3, 0.6} {
		load.WaitFraction(at)
		cd.Kill()
		t.Logf("kill %d: SIGKILL after %d claims finished", i+1, load.finished.Load())
		time.Sleep(300 * time.Millisecond)
		cd.Start()
	}
	load.Wait()

	report := Verify(t, sys, load)
	requireEveryClaimAnswered(t, load)
	finish(t, cd, "6 (batches of 50, claimd SIGKILL x2)", load, report)
}
