package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/testenv"
)

// clusterShards is RANK_SHARDS in the Redis Cluster scenario: enough that
// every master holds some.
const clusterShards = 16

// Scenario 10: claimd on a six-node Redis Cluster (three masters, three
// replicas) with a sharded ranking; the master holding shard 0 is SIGKILLed
// under load. Its replica is promoted (cluster-node-timeout 2s). While the
// slots are down ingestion goes on, lookups fall back to Postgres, never
// fail, and return to Redis once the cluster is whole; after that the
// ranking is exact.
func TestRedisClusterMasterKilled(t *testing.T) {
	requireFaults(t)
	rc := testenv.MustRedisCluster(t)
	db := testenv.MustDatabase(t)
	cd := StartClaimd(t, "claimd", ClaimdConfig{DatabaseURL: db,
		Env: []string{"REDIS_CLUSTER_URL=" + rc.URL(), fmt.Sprintf("RANK_SHARDS=%d", clusterShards)}})
	sys := System{DatabaseURL: db, Redis: rc.Client(), RankShards: clusterShards, API: cd.BaseURL()}
	waitForSource(t, cd, "redis", 30*time.Second) // the first rebuild

	lookups := watchLookups(t, cd.BaseURL())
	load := NewLoad(t, LoadConfig{Claims: 1000, Clients: 12, KeyShare: 0.3})
	load.Start(cd.BaseURL())
	load.WaitFraction(0.3)
	victim := rc.MasterOf(rank.Keys{Prefix: rank.DefaultPrefix, Shards: clusterShards}.Shard(0).Ranking())
	killed := time.Now()
	rc.Kill(victim)
	t.Logf("redis master %s killed after %d claims finished", victim, load.finished.Load())
	rc.WaitHealthy(60 * time.Second)
	t.Logf("cluster whole again %s after the kill, after %d claims finished",
		time.Since(killed).Round(100*time.Millisecond), load.finished.Load())
	load.Wait()
	waitForSource(t, cd, "redis", 30*time.Second)
	counts := lookups.stop()
	t.Logf("lookups while it ran: %v", counts)
	assert.Positive(t, counts["postgres"], "lookups fell back while the shard's slots were down")
	assert.Positive(t, counts["redis"])
	assert.Zero(t, counts["failed"], "lookups that did not answer 200")

	report := Verify(t, sys, load)
	requireRedisFaultInvisible(t, load)
	finish(t, cd, "10 (Redis Cluster master killed)", load, report)
}

// waitForSource waits until /top-providers answers from source.
func waitForSource(t *testing.T, cd *Claimd, source string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "/top-providers from "+source, func() error {
		got, err := topSource(http.DefaultClient, cd.BaseURL())
		if err != nil {
			return err
		}
		if got != source {
			return fmt.Errorf("source %s", got)
		}
		return nil
	})
}

// topSource asks /top-providers once and returns its source.
func topSource(client *http.Client, base string) (string, error) {
	resp, err := client.Get(base + "/top-providers")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var body struct {
		Source string `json:"source"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Source, nil
}

// lookupWatch asks /top-providers every 20ms and counts the answers by
// source ("failed": no 200 within 2s).
type lookupWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	counts map[string]int
}

func watchLookups(t *testing.T, base string) *lookupWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &lookupWatch{cancel: cancel, counts: map[string]int{}}
	client := &http.Client{Timeout: 2 * time.Second}
	w.wg.Go(func() {
		for ctx.Err() == nil {
			source, err := topSource(client, base)
			if err != nil && ctx.Err() == nil {
				t.Logf("lookup failed: %v", err)
				source = "failed"
			}
			w.mu.Lock()
			w.counts[source]++
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	t.Cleanup(w.stopOnce)
	return w
}

func (w *lookupWatch) stopOnce() { w.cancel(); w.wg.Wait() }

func (w *lookupWatch) stop() map[string]int {
	w.stopOnce()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts
}
