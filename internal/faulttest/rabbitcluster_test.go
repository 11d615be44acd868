package faulttest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// Scenario: async ingest on a three-node RabbitMQ cluster, RABBITMQ_URL
// listing every node, and the node leading the claims queue SIGKILLed under
// load. serve and worker-1 list the nodes from the first, where the queue
// was declared and so has its leader: they lose their connections and move
// on to another node; worker-2 lists them from the second and keeps its
// connection while the two survivors elect a new leader. Clients get 503s
// (and retry) meanwhile; no claim answered 202 may be lost. (RabbitMQ 3.10
// nacks every publish of a channel whose first one came before the
// election, for good: serve then starts afresh on a new connection, so
// its claimd_rabbitmq_connects_total may exceed 2.)
func TestRabbitClusterNodeKilled(t *testing.T) {
	requireFaults(t)
	began := time.Now()
	cluster := StartRabbitCluster(t, 3)
	cfg, sys := asyncSetup(t, cluster.URL(), "claims")
	serve := StartClaimd(t, "serve", cfg)
	sys.API = serve.BaseURL()
	second := cfg
	second.RabbitURL = strings.Join(append(strings.Split(cluster.URL(), ",")[1:], cluster.Nodes[0].URL()), ",")
	workers := []*Claimd{StartWorker(t, "worker-1", cfg), StartWorker(t, "worker-2", second)}

	var q QuorumQueue
	waitFor(t, 10*time.Second, "the claims queue to have a leader and 3 replicas online", func() error {
		var err error
		q, err = cluster.Queue("claims")
		if err == nil && (q.Leader == nil || len(q.Online) != 3) {
			err = fmt.Errorf("leader %v, replicas online %v", q.Leader != nil, q.Online)
		}
		return err
	})
	dead, err := cluster.Queue("claims.dead")
	require.NoError(t, err)
	require.Len(t, dead.Members, 3, "replicas of the dead-letter queue")
	// A quorum queue killed too soon after its declaration comes back
	// empty (see RabbitQueueSettleTime): on the killed node, at least.
	time.Sleep(RabbitQueueSettleTime)

	// Paced so that the load runs on well past the kill (about 16s).
	load := NewLoad(t, LoadConfig{Claims: 7000, Clients: 32, KeyShare: 0.3, Rate: 300,
		RetryFor: 2 * time.Minute, Timeout: 3 * time.Minute})
	load.Start(serve.BaseURL())
	load.WaitFraction(0.3)
	require.False(t, load.Done(), "the load ended before the kill")
	q, err = cluster.Queue("claims")
	require.NoError(t, err)
	victim := q.Leader
	require.NotNil(t, victim, "the claims queue has a leader")
	before := load.Sender.Stats.Unavailable.Load()
	killed := time.Now()
	victim.Kill()
	sys.RabbitURL = cluster.Nodes[0].URL() // Verify's view of the queue: a survivor
	if victim == cluster.Nodes[0] {
		sys.RabbitURL = cluster.Nodes[1].URL()
	}
	waitFor(t, 30*time.Second, "a new leader of the claims queue", func() error {
		q, err := cluster.Queue("claims")
		if err == nil && (q.Leader == nil || q.Leader == victim) {
			err = fmt.Errorf("leader %v", q.Leader)
		}
		return err
	})
	elected := time.Since(killed)
	for _, p := range append([]*Claimd{serve}, workers...) {
		sample := `claimd_rabbitmq_connected{role="worker"}`
		if p == serve {
			sample = `claimd_rabbitmq_connected{role="publisher"}`
		}
		waitFor(t, 30*time.Second, "claimd "+p.Name()+" to be connected to the broker", func() error {
			if v, _ := p.Metric(sample); v != 1 {
				return fmt.Errorf("%s is %g", sample, v)
			}
			return nil
		})
	}
	t.Logf("SIGKILL of %s (leader of the claims queue; node %d of 3) after %d claims finished: new leader elected within %s, all connected within %s",
		victim.Node(), nodeIndex(cluster, victim)+1, load.finished.Load(), elected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	// The election and the reconnections take a second or two: past a
	// margin for a slow machine, serve must take every claim again.
	const recovered = 8 * time.Second
	time.Sleep(time.Until(killed.Add(recovered)))
	require.False(t, load.Done(), "the load ended too soon after the kill to tell that serve recovered")
	late := load.Sender.Stats.Unavailable.Load()

	load.Wait()
	requireEveryClaimAnswered(t, load)
	for _, p := range append([]*Claimd{serve}, workers...) {
		require.True(t, p.Running(), "claimd %s must survive the node's death", p.Name())
		require.Equal(t, 1, p.Starts(), "claimd %s was restarted", p.Name())
		n, _ := p.Metric("claimd_rabbitmq_connects_total")
		t.Logf("claimd %s connected to the broker %g times", p.Name(), n)
	}
	if victim == cluster.Nodes[0] {
		n, _ := serve.Metric("claimd_rabbitmq_connects_total")
		assert.GreaterOrEqual(t, n, 2.0, "serve was on the killed node (the first listed), and moved on")
	}
	report := Verify(t, sys, load)

	s, n := load.Sender.Stats, load.Count()
	var acked []string
	for _, c := range load.Claims {
		if c.Outcome() == loadkit.Acked {
			acked = append(acked, c.ExternalID)
		}
	}
	lost, err := missingClaims(sys.DatabaseURL, acked)
	require.NoError(t, err)
	assert.Empty(t, lost, "claims answered 202 and not stored")
	assert.Zero(t, s.Other5xx.Load(), "5xx answers other than 503 with Retry-After")
	assert.Zero(t, s.NoRetryAfter.Load(), "503 answers without Retry-After")
	assert.Equal(t, late, s.Unavailable.Load(), "503 answers more than %s after the kill", recovered)
	t.Logf("rabbitmq cluster, one node of 3 SIGKILLed: claims sent %d, answered 202 %d, stored %d, lost %d; "+
		"503 answers %d (%d after the kill), slowest 5xx %s; scenario took %s",
		len(load.Claims), n[loadkit.Acked], report.Stored, len(lost), s.Unavailable.Load(), s.Unavailable.Load()-before,
		s.Slowest5xx().Round(time.Millisecond), time.Since(began).Round(time.Second))
	finishAsync(t, serve, workers, "rabbitmq cluster (async ingest, the queue's leader of 3 nodes SIGKILLed under load)", load, report)
}

// nodeIndex is the index of s among the cluster's nodes.
func nodeIndex(c *RabbitCluster, s *RabbitServer) int {
	for i, node := range c.Nodes {
		if node == s {
			return i
		}
	}
	return -1
}
