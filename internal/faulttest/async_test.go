package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/testenv"
)

// The async-mode proofs: claimd serve with INGEST_MODE=async answers 202
// once RabbitMQ has confirmed a claim, and claimd worker processes store it
// later. Each proof ends with Verify, which first waits until the queue is
// drained: every claim answered 202 is then in Postgres exactly once, no
// other is, and the totals, Redis and /top-providers are exact. Unlike the
// FAULTS scenarios they run in every `go test`.

// asyncSetup starts what an async claimd needs besides the broker: a fresh
// database of the shared Postgres and a redis-server of the test's own. It
// returns the configuration of serve, its workers and claimd dlq, and the
// System to verify (API is set once serve runs). The queue must be the
// test's own: testenv.MustQueueName on the shared broker, called before any
// process is started (so that it is deleted after they are killed), or any
// name on a private one.
func asyncSetup(t *testing.T, rabbitURL, queue string) (ClaimdConfig, System) {
	t.Helper()
	rs := testenv.MustRedisServer(t)
	db := testenv.MustDatabase(t)
	cfg := ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL(), Async: true, RabbitURL: rabbitURL, Queue: queue}
	sys := System{DatabaseURL: db, Redis: rs.Client(), Async: true, RabbitURL: rabbitURL, Queue: queue}
	return cfg, sys
}

// startWorkers starts n claimd worker processes.
func startWorkers(t *testing.T, cfg ClaimdConfig, n int) []*Claimd {
	t.Helper()
	workers := make([]*Claimd, n)
	for i := range workers {
		workers[i] = StartWorker(t, fmt.Sprintf("worker-%d", i+1), cfg)
	}
	return workers
}

// finishAsync stops the workers (SIGTERM: each must drain and exit 0) after
// logging what they counted, then reports the scenario and stops serve as
// finish does.
func finishAsync(t *testing.T, serve *Claimd, workers []*Claimd, scenario string, load *Load, report Report) {
	t.Helper()
	for _, w := range workers {
		w.LogMetrics()
		w.Terminate()
	}
	finish(t, serve, scenario, load, report)
}

// requireAllAccepted: with the broker up, every claim is acknowledged with
// a 202, once. A 503 with Retry-After is allowed (serve says so when Redis,
// where it records the claim as queued, or the broker's confirm is slow: on
// a busy machine), and retried; it is logged. No other answer may come.
func requireAllAccepted(t *testing.T, load *Load) {
	t.Helper()
	requireEveryClaimAnswered(t, load)
	s := load.Sender.Stats
	assert.EqualValues(t, len(load.Claims), s.Accepted.Load(), "claims answered 202")
	assert.Zero(t, s.Created.Load()+s.OK.Load()+s.Replayed.Load(), "answers 200/201 in async mode")
	assert.Zero(t, s.Other5xx.Load()+s.NoRetryAfter.Load(), "5xx answers other than 503 with Retry-After")
	assert.Zero(t, s.NoAnswer.Load()+s.Conflict.Load(), "requests without an answer, or answered 409")
	if n := s.Unavailable.Load(); n > 0 {
		t.Logf("note: %d answers were 503 (retried) although the broker was up; see serve's claimd_queue_publish_refused_total by reason", n)
	}
}

// probeClaims picks n claims spread over the load.
func probeClaims(load *Load, n int) []*Claim {
	out := make([]*Claim, 0, n)
	for i := range n {
		out = append(out, load.Claims[i*len(load.Claims)/n])
	}
	return out
}

// requireClaimStatus requires GET /claims/{id} of each probe (by the id its
// 202 named) to answer 200 with status want, naming the probe's claim_id.
func requireClaimStatus(t *testing.T, api string, probes []*Claim, want string) {
	t.Helper()
	for _, c := range probes {
		ids := c.AckedIDs()
		require.Len(t, ids, 1, "claim %s", c.ExternalID)
		status, st, err := getClaim(api, "", ids[0])
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "GET /claims/%s", ids[0])
		assert.Equal(t, want, st.Status, "GET /claims/%s: status", ids[0])
		assert.Equal(t, c.ExternalID, st.ClaimID, "GET /claims/%s: claim_id", ids[0])
		assert.Equal(t, loadkit.FormatCents(c.NetFee()), st.NetFee.String(), "GET /claims/%s: net_fee", ids[0])
		if want == "stored" {
			assert.Equal(t, ids[0], st.ID, "GET /claims/%s: id", ids[0])
		}
	}
}

// storedClaims counts the rows of the claims table.
func storedClaims(t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(t.Context()))
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM claims`).Scan(&n))
	return n
}

// Proof 3: the broker (a private node) is restarted twice under load:
// gracefully, and then with SIGKILL. While it is away serve must answer 503
// with Retry-After, fast, and never a 202 for a claim the broker then loses
// (Verify proves that); serve and the workers reconnect by themselves, with
// no restart.
func TestAsyncBrokerRestarted(t *testing.T) {
	t.Parallel()
	rabbit := StartRabbit(t)
	cfg, sys := asyncSetup(t, rabbit.URL(), "claims")
	serve := StartClaimd(t, "serve", cfg)
	sys.API = serve.BaseURL()
	workers := startWorkers(t, cfg, 2)
	// A quorum queue killed too soon after its declaration comes back empty
	// (a RabbitMQ fault, see RabbitQueueSettleTime): no fault before this.
	time.Sleep(RabbitQueueSettleTime)
	procs := append([]*Claimd{serve}, workers...)
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.Pid()
	}

	// A broker boot is slow on a busy machine: the node can stay away
	// longer than the 45s a client retries by default.
	load := NewLoad(t, LoadConfig{Claims: 4500, Clients: 32, KeyShare: 0.3, Rate: 500,
		RetryFor: 3 * time.Minute, Timeout: 5 * time.Minute})
	load.Start(serve.BaseURL())
	for i, fault := range []struct {
		at   float64
		name string
		stop func()
	}{
		{0.25, "graceful stop", rabbit.Stop},
		{0.55, "SIGKILL", rabbit.Kill},
	} {
		load.WaitFraction(fault.at)
		if i > 0 {
			// Killed too soon after its last start, the node loses what
			// was published since (see RabbitQueueSettleTime).
			time.Sleep(RabbitQueueSettleTime - rabbit.SinceStart())
		}
		require.False(t, load.Done(), "the load ended before the broker's restart %d", i+1)
		before := load.Sender.Stats.Unavailable.Load()
		start := time.Now()
		fault.stop()
		stopped := time.Since(start)
		// Down for 3s more (the answers of requests the broker confirmed
		// before it went are out by now): nothing may be accepted meanwhile.
		time.Sleep(100 * time.Millisecond)
		accepted, refused := load.Sender.Stats.Accepted.Load(), load.Sender.Stats.Unavailable.Load()
		time.Sleep(3 * time.Second) // clients retry every 2s (Retry-After)
		assert.Equal(t, accepted, load.Sender.Stats.Accepted.Load(), "claims answered 202 while the broker was down")
		assert.Greater(t, load.Sender.Stats.Unavailable.Load(), refused, "503 answers while the broker was down")
		rabbit.Start()
		away := time.Since(start)
		for _, p := range procs { // each reconnects by itself
			waitFor(t, 30*time.Second, "claimd "+p.Name()+" to reconnect to the broker", func() error {
				if n, _ := p.Metric("claimd_rabbitmq_connects_total"); n < float64(i+2) {
					return fmt.Errorf("%g connections to the broker so far", n)
				}
				return nil
			})
		}
		t.Logf("broker restart %d (%s): after %d claims finished; stopping took %s, away %s, all reconnected %s later; 503 answers meanwhile %d",
			i+1, fault.name, load.finished.Load(), stopped.Round(time.Millisecond), away.Round(time.Millisecond),
			(time.Since(start) - away).Round(time.Millisecond), load.Sender.Stats.Unavailable.Load()-before)
	}
	load.Wait()
	requireEveryClaimAnswered(t, load)

	for i, p := range procs {
		require.True(t, p.Running(), "claimd %s must survive the broker restarts", p.Name())
		require.Equal(t, pids[i], p.Pid(), "claimd %s was restarted", p.Name())
		require.Equal(t, 1, p.Starts(), "claimd %s was restarted", p.Name())
	}
	report := Verify(t, sys, load)
	s := load.Sender.Stats
	assert.Positive(t, s.Unavailable.Load(), "503 answers while the broker was away")
	assert.Zero(t, s.Other5xx.Load(), "5xx answers other than 503 with Retry-After")
	assert.Zero(t, s.NoRetryAfter.Load(), "503 answers without Retry-After")
	assert.Less(t, s.Slowest5xx(), 5*time.Second, "a 503 must come fast")
	t.Logf("503 answers: %d, slowest took %s", s.Unavailable.Load(), s.Slowest5xx().Round(time.Millisecond))
	finishAsync(t, serve, workers, "async 3 (broker restarted x2 under load: graceful, SIGKILL)", load, report)
}

// Proof 1: with no worker running, every claim is still answered 202 (the
// broker has it), nothing is in Postgres, GET says "queued"; two workers
// started later store everything exactly once.
func TestAsyncWorkersStopped(t *testing.T) {
	t.Parallel()
	queue := testenv.MustQueueName(t)
	cfg, sys := asyncSetup(t, testenv.SharedRabbitMQURL(), queue)
	serve := StartClaimd(t, "serve", cfg)
	sys.API = serve.BaseURL()

	load := NewLoad(t, LoadConfig{Claims: 10000, Clients: 48, KeyShare: 0.3})
	load.Start(serve.BaseURL())
	load.Wait()
	requireAllAccepted(t, load)
	t.Logf("%d claims answered 202 in %s with no worker running", len(load.Claims), load.Elapsed.Round(time.Millisecond))

	require.Zero(t, storedClaims(t, sys.DatabaseURL), "claims in Postgres before any worker ran")
	waitFor(t, 10*time.Second, "the queue to hold every accepted claim", func() error {
		depth, _, err := queueDepths(sys)
		if err == nil && depth < len(load.Claims) {
			err = fmt.Errorf("queue %s holds %d messages", queue, depth)
		}
		return err
	})
	probes := probeClaims(load, 5)
	requireClaimStatus(t, sys.API, probes, "queued")

	workers := startWorkers(t, cfg, 2)
	report := Verify(t, sys, load)
	requireClaimStatus(t, sys.API, probes, "stored")
	finishAsync(t, serve, workers, "async 1 (10000 claims queued with no worker, then 2 workers)", load, report)
}

// Proof 2: two workers store the claims while the load runs, and one of
// them, in turn, is SIGKILLed while it holds claims it has not acked (its
// batch being stored, or stored and not acked yet), then started again. The
// broker delivers those messages again; a claim whose batch was committed
// before the kill must not be stored twice.
func TestAsyncWorkerKilled(t *testing.T) {
	t.Parallel()
	queue := testenv.MustQueueName(t)
	cfg, sys := asyncSetup(t, testenv.SharedRabbitMQURL(), queue)
	serve := StartClaimd(t, "serve", cfg)
	sys.API = serve.BaseURL()
	workers := startWorkers(t, cfg, 2)

	// Paced, so the load runs through all four kills and restarts.
	load := NewLoad(t, LoadConfig{Claims: 5000, Clients: 32, KeyShare: 0.3, Rate: 700})
	load.Start(serve.BaseURL())
	// What the workers counted, summed over their runs: each victim's
	// counters are read just before it is killed, and all at the end (also
	// when the test fails).
	var redelivered, dedupedRedelivery, dedupedKey, consumed, acked float64
	count := func(w *Claimd) {
		for sample, sum := range map[string]*float64{
			"claimd_queue_redelivered_total":                         &redelivered,
			`claimd_claims_deduplicated_total{by="redelivery"}`:      &dedupedRedelivery,
			`claimd_claims_deduplicated_total{by="idempotency_key"}`: &dedupedKey,
			"claimd_queue_consumed_total":                            &consumed,
			"claimd_queue_acked_total":                               &acked,
		} {
			v, _, _ := loadkit.ScrapeSample(context.Background(), w.BaseURL(), sample)
			*sum += v
		}
	}
	logCounts := sync.OnceFunc(func() {
		for _, w := range workers {
			count(w)
		}
		// A claim stored before its message was acked is found stored when
		// delivered again: by its id, or first by its idempotency key.
		t.Logf("workers over all their runs: consumed %g messages, acked %g, redelivered %g; "+
			"claims found stored already (their batch committed before the kill): %g by id (redelivery), %g by idempotency key",
			consumed, acked, redelivered, dedupedRedelivery, dedupedKey)
	})
	defer logCounts()
	for i, at := range []float64{0.15, 0.35, 0.55, 0.75} {
		load.WaitFraction(at)
		victim := workers[i%len(workers)]
		// Mid-batch: wait (briefly) until it holds messages it has not acked.
		var holding float64
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			c, _ := victim.Metric("claimd_queue_consumed_total")
			a, _ := victim.Metric("claimd_queue_acked_total")
			if holding = c - a; holding > 0 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		count(victim)
		victim.Kill()
		t.Logf("kill %d: SIGKILL of %s holding %g unacked messages, after %d claims finished", i+1, victim.Name(), holding, load.finished.Load())
		victim.Start()
	}
	load.Wait()
	requireAllAccepted(t, load)

	report := Verify(t, sys, load)
	logCounts()
	finishAsync(t, serve, workers, "async 2 (2 workers, one SIGKILLed x4 under load)", load, report)
}

// Proof 4 (the operator's tools): a message that is not a claim is
// dead-lettered by the worker, `claimd dlq list` shows it, and `claimd dlq
// replay --id --body-file` puts a corrected claim in its place, which is
// then stored under the message's id; the dead-letter queue is empty after.
func TestAsyncDeadLetterReplayCLI(t *testing.T) {
	t.Parallel()
	queue := testenv.MustQueueName(t)
	cfg, sys := asyncSetup(t, testenv.SharedRabbitMQURL(), queue)
	cfg.DeliveryLimit = 2
	serve := StartClaimd(t, "serve", cfg)
	sys.API = serve.BaseURL()
	workers := startWorkers(t, cfg, 1)

	// Some ordinary claims around it, verified with the replayed one.
	load := NewLoad(t, LoadConfig{Claims: 300, Clients: 8, KeyShare: 0.3})
	load.Start(serve.BaseURL())

	id := uuid.NewString()
	publishRaw(t, sys.RabbitURL, queue, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Type: "claim",
		Headers: amqp.Table{"claimd-received-at": time.Now().UTC().Format(time.RFC3339Nano)},
		Body:    []byte(`{"claim_id": "garbage", "lines": [{"service_date": `),
	})
	load.Wait()
	requireAllAccepted(t, load)

	var listed []deadLetterLine
	waitFor(t, 15*time.Second, "claimd dlq list to show the dead letter", func() error {
		var err error
		listed, err = dlqList(t, cfg)
		if err == nil && len(listed) == 0 {
			err = fmt.Errorf("claimd dlq list printed nothing")
		}
		return err
	})
	require.Len(t, listed, 1, "dead letters: %+v", listed)
	assert.Equal(t, id, listed[0].MessageID)
	assert.Equal(t, "undecodable", listed[0].Reason)
	status, _, err := getClaim(sys.API, sys.APIKey, id)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, status, "GET /claims/%s of a message that never was a claim", id)

	fixed := load.Extra("dlq-replayed", "")
	bodyFile := filepath.Join(t.TempDir(), "claim.json")
	require.NoError(t, os.WriteFile(bodyFile, fixed.Body, 0o600))
	out, err := RunClaimd(t, cfg, "dlq", "replay", "--id", id, "--body-file", bodyFile)
	require.NoError(t, err)
	assert.JSONEq(t, `{"replayed":1}`, out)
	fixed.AckedAs(id) // from now on it must be stored, once, under id

	report := Verify(t, sys, load)
	requireClaimStatus(t, sys.API, []*Claim{fixed}, "stored")
	listed, err = dlqList(t, cfg)
	require.NoError(t, err)
	assert.Empty(t, listed, "claimd dlq list after the replay")
	undecodable, _ := workers[0].Metric(`claimd_queue_dead_lettered_total{reason="undecodable"}`)
	assert.Equal(t, 1.0, undecodable, "messages the worker dead-lettered as undecodable")
	finishAsync(t, serve, workers, "async 4 (dead letter listed and replayed with claimd dlq)", load, report)
}

// deadLetterLine is one line `claimd dlq list` prints.
type deadLetterLine struct {
	MessageID  string `json:"message_id"`
	ReceivedAt string `json:"received_at"`
	Reason     string `json:"reason"`
	Bytes      int    `json:"bytes"`
}

// dlqList runs `claimd dlq list` and decodes its lines.
func dlqList(t *testing.T, cfg ClaimdConfig) ([]deadLetterLine, error) {
	t.Helper()
	out, err := RunClaimd(t, cfg, "dlq", "list")
	if err != nil {
		return nil, err
	}
	var list []deadLetterLine
	for line := range strings.Lines(out) {
		var dl deadLetterLine
		if err := json.Unmarshal([]byte(line), &dl); err != nil {
			return nil, fmt.Errorf("claimd dlq list printed %q: %w", line, err)
		}
		list = append(list, dl)
	}
	return list, nil
}

// publishRaw publishes msg to queue as a producer other than claimd would,
// and waits for the broker's confirm.
func publishRaw(t *testing.T, url, queue string, msg amqp.Publishing) {
	t.Helper()
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, msg)
	require.NoError(t, err)
	ok, err := conf.WaitContext(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the broker refused the message")
}
