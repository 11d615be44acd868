package testenv_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/testenv"
)

// mustClientFromURL is the client a service configured with c.URL() makes.
func mustClientFromURL(t *testing.T, c *testenv.RedisCluster) *redis.ClusterClient {
	t.Helper()
	opts, err := redis.ParseClusterURL(c.URL())
	require.NoError(t, err)
	require.ElementsMatch(t, c.Addrs(), opts.Addrs, "the URL names every node")
	client := redis.NewClusterClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestSharedRedisClusterServesKeysOnEveryMasterAndDropsThePrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	c := testenv.SharedRedisCluster(t)
	t.Logf("shared cluster ready after %s (started here unless another test did)", time.Since(start))
	require.Len(t, c.Addrs(), 6)
	require.Equal(t, c.Addrs(), testenv.SharedRedisCluster(t).Addrs(), "one cluster per test binary")
	client := mustClientFromURL(t, c)

	var prefix string
	t.Run("keys on every master", func(t *testing.T) {
		c := testenv.SharedRedisCluster(t)
		prefix = testenv.ClusterPrefix(t, c)
		keyOn := map[string]string{} // master address -> a key it serves
		for i := 0; len(keyOn) < 3 && i < 1000; i++ {
			key := prefix + strconv.Itoa(i)
			require.NoError(t, client.Set(ctx, key, "value "+key, 0).Err())
			keyOn[c.MasterOf(key)] = key
		}
		require.Len(t, keyOn, 3, "the keys' slots are spread over three masters")
		for master, key := range keyOn {
			require.Contains(t, c.Addrs(), master)
			got, err := client.Get(ctx, key).Result()
			require.NoError(t, err)
			require.Equal(t, "value "+key, got)
		}
	})

	var left atomic.Int64 // ForEachMaster asks the masters at once
	err := client.ForEachMaster(ctx, func(ctx context.Context, master *redis.Client) error {
		keys, _, err := master.Scan(ctx, 0, prefix+"*", 10000).Result()
		left.Add(int64(len(keys)))
		return err
	})
	require.NoError(t, err)
	require.Zero(t, left.Load(), "ClusterPrefix deletes the test's keys when it ends")
}

func TestRedisClusterPromotesTheReplicaOfAKilledMaster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	c := testenv.MustRedisCluster(t)
	t.Logf("cluster started in %s", time.Since(start))
	before := c.Client() // made before the kill: it must find the new master too

	key := testenv.ClusterPrefix(t, c) + "written-before-the-kill"
	master := c.MasterOf(key)
	m := redis.NewClient(&redis.Options{Addr: master})
	defer m.Close()
	role, err := m.Do(ctx, "ROLE").Slice()
	require.NoError(t, err)
	require.Equal(t, "master", role[0])
	replicas := role[2].([]any)
	require.Len(t, replicas, 1, "each master has one replica")
	r := replicas[0].([]any)
	replica := net.JoinHostPort(fmt.Sprint(r[0]), fmt.Sprint(r[1]))

	// WAIT counts the replicas that have this connection's writes, so the
	// write and the WAIT share one connection.
	conn := m.Conn()
	defer conn.Close()
	require.NoError(t, conn.Set(ctx, key, "kept", 0).Err())
	acked, err := conn.Wait(ctx, 1, 10*time.Second).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, acked, "the replica has the write before its master dies")

	c.Kill(master)
	killed := time.Now()
	c.WaitHealthy(30 * time.Second)
	t.Logf("replica promoted and cluster healthy %s after the kill", time.Since(killed))
	require.Equal(t, replica, c.MasterOf(key), "the killed master's replica serves its slots")

	after := mustClientFromURL(t, c)
	got, err := after.Get(ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, "kept", got, "the promoted replica has the replicated write")
	require.NoError(t, after.Set(ctx, key, "written after the failover", 0).Err())

	// The deadline only bounds the wait for the client's next slot map reload.
	err = proc.Poll(ctx, 50*time.Millisecond, 10*time.Second, func() error {
		v, err := before.Get(ctx, key).Result()
		if err == nil && v != "written after the failover" {
			return proc.Stop(fmt.Errorf("got %q", v))
		}
		return err
	})
	require.NoError(t, err, "a client made before the kill finds the promoted replica")
}
