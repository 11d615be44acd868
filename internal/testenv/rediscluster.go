package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
)

const (
	clusterSize = 6 // three masters, each with one replica

	// clusterBusOffset is how far above its client port a node listens for
	// the cluster bus; Redis fixes it, so both ports must be free.
	clusterBusOffset = 10000

	// clusterNodeTimeout is how long a master may be unreachable before it
	// is failed over. Small, so that a failover test is quick; not so small
	// that a loaded two-core machine sees failovers nobody asked for.
	clusterNodeTimeout = 2 * time.Second
)

// RedisCluster is six redis-server nodes of the test's own on loopback,
// joined as three masters each with one replica.
//
// Its methods fail the test that got it (from MustRedisCluster or
// SharedRedisCluster); each test gets its own handle on a shared cluster.
type RedisCluster struct {
	t      testing.TB
	dir    string
	nodes  []*clusterNode
	shared bool
}

// clusterNode is one redis-server of a cluster. Its fields never change
// after the start, so handles may share nodes across tests.
type clusterNode struct {
	addr   string
	dir    string // its nodes.conf and redis.log
	child  *proc.Process
	client *redis.Client // the node alone, for asking it about the cluster
}

func (n *clusterNode) logPath() string { return filepath.Join(n.dir, "redis.log") }

// MustRedisCluster starts a new cluster; killed when the test ends.
func MustRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	dir := t.TempDir()
	nodes, err := startCluster(dir)
	require.NoError(t, err, "the Redis Cluster did not start")
	t.Cleanup(func() {
		for _, n := range nodes {
			n.child.Kill()
			_ = n.client.Close()
		}
		if t.Failed() {
			t.Log(clusterLogs(nodes))
		}
	})
	return &RedisCluster{t: t, dir: dir, nodes: nodes}
}

// sharedCluster starts the shared cluster once per test binary. Its
// directory outlives the test that started it (the nodes keep writing to
// it), so it is left in os.TempDir, small: nothing is saved but nodes.conf
// and the logs.
var sharedCluster = sync.OnceValues(func() (*RedisCluster, error) {
	dir, err := os.MkdirTemp("", "claimd-rediscluster-")
	if err != nil {
		return nil, err
	}
	nodes, err := startCluster(dir)
	if err != nil {
		return nil, err
	}
	return &RedisCluster{dir: dir, nodes: nodes, shared: true}, nil
})

// SharedRedisCluster returns one cluster per test binary, started on first use
// (sync.Once) and never flushed: callers use a key prefix of their own
// (as with MustSharedRedis). Its nodes die with the test binary. A failed
// start fails the test that asked (and later askers too).
func SharedRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	c, err := sharedCluster()
	require.NoError(t, err, "the shared Redis Cluster did not start")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the shared Redis Cluster's node logs are under %s", c.dir)
		}
	})
	return &RedisCluster{t: t, dir: c.dir, nodes: c.nodes, shared: true}
}

// URL is the cluster in go-redis ParseClusterURL form, naming all six nodes
// so that a client finds the cluster while any of them is down.
func (c *RedisCluster) URL() string {
	addrs := c.Addrs()
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}

// Addrs is every node's host:port, down ones too.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// Client returns a new client of the cluster, closed when the test that got
// c ends. It reloads the slot map every second: with go-redis's default (a
// minute) a client keeps dialling a killed master until its next reload,
// as a client made from URL does.
func (c *RedisCluster) Client() *redis.ClusterClient {
	client := redis.NewClusterClient(c.clientOptions())
	c.t.Cleanup(func() { _ = client.Close() })
	return client
}

func (c *RedisCluster) clientOptions() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                      c.Addrs(),
		DialTimeout:                time.Second,
		ReadTimeout:                2 * time.Second,
		WriteTimeout:               2 * time.Second,
		ClusterStateReloadInterval: time.Second,
	}
}

// MasterOf returns the address of the master serving key's slot, as the
// first live node that answers sees it. While a failover is under way
// nodes may disagree; after WaitHealthy they do not.
func (c *RedisCluster) MasterOf(key string) string {
	c.t.Helper()
	ctx := context.Background()
	var errs []error
	for _, n := range c.live() {
		master, err := n.masterOf(ctx, key)
		if err == nil {
			return master
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.addr, err))
	}
	require.Fail(c.t, "no live node says which master serves "+key, "%v", errors.Join(errs...))
	return ""
}

func (n *clusterNode) masterOf(ctx context.Context, key string) (string, error) {
	slot, err := n.client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := n.client.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("slot %d is not served", slot)
}

// Kill sends the node at addr SIGKILL and waits for it to exit; it stays
// down. Only a cluster of the test's own: killing a node of the shared one
// would fail other tests.
func (c *RedisCluster) Kill(addr string) {
	c.t.Helper()
	require.False(c.t, c.shared, "Kill on the shared Redis Cluster; use MustRedisCluster")
	for _, n := range c.nodes {
		if n.addr == addr {
			n.child.Kill()
			return
		}
	}
	require.Fail(c.t, "no node of this cluster is at "+addr, "nodes: %v", c.Addrs())
}

// WaitHealthy waits until every live node sees cluster_state:ok and the same
// slot map, every slot is served by a live master that knows it is one, no
// live node is marked failing, and every live replica's link to its master
// is up (else a replica could not take over when its master dies). It fails
// the test after timeout.
func (c *RedisCluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	err := proc.Poll(context.Background(), 50*time.Millisecond, timeout, func() error { return healthy(c.nodes) })
	require.NoError(c.t, err, "the Redis Cluster did not become healthy")
}

// ClusterPrefix returns a key prefix no other test uses, and deletes its
// keys on every master when the test ends. The prefix has no braces, so a
// hash tag in the rest of a key still decides its slot.
func ClusterPrefix(t testing.TB, c *RedisCluster) string {
	t.Helper()
	prefix := fmt.Sprintf("claimd-test:%d:%d:%d:", os.Getpid(), time.Now().UnixNano(), prefixSeq.Add(1))
	client := redis.NewClusterClient(c.clientOptions())
	t.Cleanup(func() {
		defer client.Close()
		// Bounded: the test may have left the cluster without some slots.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := client.ForEachMaster(ctx, func(ctx context.Context, master *redis.Client) error {
			iter := master.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				if err := master.Del(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			return iter.Err()
		})
		if err != nil {
			t.Logf("delete the keys %s* from the Redis Cluster: %v", prefix, err)
		}
	})
	return prefix
}

var prefixSeq atomic.Int64

func (c *RedisCluster) live() []*clusterNode {
	var live []*clusterNode
	for _, n := range c.nodes {
		if n.child.Running() {
			live = append(live, n)
		}
	}
	return live
}

// startCluster starts six nodes under dir, joins them with redis-cli and
// waits until the cluster is healthy. On failure it kills them and the
// error carries the tails of their logs.
func startCluster(dir string) (nodes []*clusterNode, err error) {
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed: %w", tool, err)
		}
	}
	defer func() {
		if err != nil {
			for _, n := range nodes {
				n.child.Kill()
				_ = n.client.Close()
			}
			err = fmt.Errorf("%w\n%s", err, clusterLogs(nodes))
		}
	}()

	taken := map[int]bool{}
	for range clusterSize {
		n, err := startClusterNode(dir, taken)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, n := range nodes {
		args = append(args, n.addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return nodes, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}

	err = proc.Poll(ctx, 50*time.Millisecond, 30*time.Second, func() error { return healthy(nodes) })
	if err != nil {
		return nodes, fmt.Errorf("the Redis Cluster did not become healthy: %w", err)
	}
	return nodes, nil
}

// startClusterNode starts one node on a port whose bus port is free too,
// marking both taken. Another process may take a port between the check and
// redis-server's bind, so a node that exits at once is tried again on
// other ports.
func startClusterNode(dir string, taken map[int]bool) (*clusterNode, error) {
	var errs []error
	for range 3 {
		port, err := clusterPort(taken)
		if err != nil {
			return nil, err
		}
		taken[port], taken[port+clusterBusOffset] = true, true
		n, err := spawnClusterNode(filepath.Join(dir, strconv.Itoa(port)), port)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// clusterPort returns a loopback port that was free a moment ago, and whose
// bus port was too, neither of them in taken.
func clusterPort(taken map[int]bool) (int, error) {
	for range 100 {
		port, err := proc.FreePort()
		if err != nil {
			return 0, err
		}
		bus := port + clusterBusOffset
		if bus > 65535 || taken[port] || taken[bus] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bus)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return port, nil
	}
	return 0, errors.New("found no free port whose cluster bus port is free too")
}

func spawnClusterNode(dir string, port int) (*clusterNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	n := &clusterNode{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	child, err := proc.Spawn(exec.Command("redis-server",
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
		// However long its link has been down, a replica may take over: a
		// test kills a master to see exactly that.
		"--cluster-replica-validity-factor", "0",
		// Replicas sync over the socket at once: nothing waits on disk.
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
		"--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")))
	if err != nil {
		return nil, err
	}
	n.child = child
	n.client = redis.NewClient(&redis.Options{Addr: n.addr, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	err = proc.Poll(context.Background(), 20*time.Millisecond, 10*time.Second, func() error {
		if !child.Running() {
			return proc.Stop(fmt.Errorf("redis-server on %s exited (%v):\n%s", n.addr, child.Err(), logTail(n.logPath())))
		}
		return n.client.Ping(context.Background()).Err()
	})
	if err != nil {
		child.Kill()
		_ = n.client.Close()
		return nil, err
	}
	return n, nil
}

// healthy says what is wrong with the cluster, as its live nodes see it;
// see WaitHealthy.
func healthy(nodes []*clusterNode) error {
	ctx := context.Background()
	live := map[string]bool{}
	for _, n := range nodes {
		if n.child.Running() {
			live[n.addr] = true
		}
	}
	var firstMap string
	roles := map[string]string{}    // node -> "master" or "slave", as it says
	masters := map[string]bool{}    // the nodes serving slots
	masterOf := map[string]string{} // live replica -> its master, as it says
	online := map[string]string{}   // replica -> the master that counts it online
	for _, n := range nodes {
		if !live[n.addr] {
			continue
		}
		info, err := n.client.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", n.addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", n.addr)
		}

		slots, err := n.client.ClusterSlots(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER SLOTS: %w", n.addr, err)
		}
		slotMap, err := checkSlots(slots, live)
		if err != nil {
			return fmt.Errorf("%s sees %w", n.addr, err)
		}
		if firstMap == "" {
			firstMap = slotMap
		} else if slotMap != firstMap {
			return fmt.Errorf("%s sees the slots served as %s; another node as %s", n.addr, slotMap, firstMap)
		}
		for _, s := range slots {
			masters[s.Nodes[0].Addr] = true
		}

		text, err := n.client.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER NODES: %w", n.addr, err)
		}
		for line := range strings.Lines(text) {
			// <id> <ip:port@cport[,hostname]> <flags> ...
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			if live[addr] && strings.Contains(f[2], "fail") {
				return fmt.Errorf("%s marks the live node %s %s", n.addr, addr, f[2])
			}
		}

		repl, err := n.client.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", n.addr, err)
		}
		roles[n.addr] = infoField(repl, "role")
		if roles[n.addr] == "slave" {
			if infoField(repl, "master_link_status") != "up" {
				return fmt.Errorf("%s: the replica's link to its master is not up", n.addr)
			}
			masterOf[n.addr] = net.JoinHostPort(infoField(repl, "master_host"), infoField(repl, "master_port"))
		}
		for i := range infoInt(repl, "connected_slaves") {
			// slave0:ip=127.0.0.1,port=6380,state=online,offset=...,lag=0
			f := map[string]string{}
			for kv := range strings.SplitSeq(infoField(repl, "slave"+strconv.Itoa(i)), ",") {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			if f["state"] == "online" {
				online[net.JoinHostPort(f["ip"], f["port"])] = n.addr
			}
		}
	}
	if len(live) == 0 {
		return proc.Stop(errors.New("no node of the cluster is running"))
	}
	for m := range masters {
		if roles[m] != "master" {
			return fmt.Errorf("%s serves slots but says it is a %s", m, roles[m])
		}
	}
	// A replica's link may be up before its master counts it online (the
	// master waits for its first ACK), and only then does WAIT count it.
	for r, m := range masterOf {
		if online[r] != m {
			return fmt.Errorf("%s is not yet an online replica of %s", r, m)
		}
	}
	return nil
}

// infoInt is the integer value of name in INFO, 0 when missing.
func infoInt(info, name string) int {
	n, _ := strconv.Atoi(infoField(info, name))
	return n
}

// checkSlots checks that slots cover all 16384 slots, each range served by a
// live master, and returns them in a form to compare between nodes.
func checkSlots(slots []redis.ClusterSlot, live map[string]bool) (string, error) {
	slots = slices.Clone(slots)
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var b strings.Builder
	next := 0
	for _, s := range slots {
		if s.Start != next {
			return "", fmt.Errorf("slots %d-%d served by no master", next, s.Start-1)
		}
		if len(s.Nodes) == 0 || !live[s.Nodes[0].Addr] {
			return "", fmt.Errorf("slots %d-%d served by a node that is down", s.Start, s.End)
		}
		fmt.Fprintf(&b, "%d-%d:%s ", s.Start, s.End, s.Nodes[0].Addr)
		next = s.End + 1
	}
	if next != 16384 {
		return "", fmt.Errorf("slots %d-16383 served by no master", next)
	}
	return strings.TrimSpace(b.String()), nil
}

// infoField is the value of name in INFO's "name:value" lines.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// clusterLogs is the tail of every node's log, for a failure message.
func clusterLogs(nodes []*clusterNode) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "----- redis-server %s (%s) -----\n%s\n", n.addr, n.logPath(), logTail(n.logPath()))
	}
	return b.String()
}

// logTail is the last lines of the log at path: enough to see why a node
// left or would not join.
func logTail(path string) string {
	text, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	if len(lines) > 30 {
		lines = append([]string{"[...]"}, lines[len(lines)-30:]...)
	}
	return strings.Join(lines, "\n")
}
