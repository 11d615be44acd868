package faulttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// RabbitCluster is RabbitMQ nodes of the test's own (each a RabbitServer:
// its own name, ports and directory) joined in one cluster, as a
// three-node production broker is: a quorum queue declared on it has a
// replica on each node and keeps every confirmed message when one dies.
type RabbitCluster struct {
	Nodes []*RabbitServer // Nodes[0] is the one the others joined
}

// StartRabbitCluster boots n nodes at once, sharing one Erlang cookie and
// cluster name, and joins the others to the first. It returns once every
// node runs as a member and accepts AMQP connections; the nodes are killed
// when the test ends. A quorum queue gets as many replicas as the cluster
// has members when it is declared, so declare queues only after this.
func StartRabbitCluster(t testing.TB, n int) *RabbitCluster {
	t.Helper()
	require.GreaterOrEqual(t, n, 2, "a cluster")
	// Every member answers with the cluster's name, whichever node the
	// client reached; a random one, as no other cluster's.
	opts := rabbitOptions{cookie: randomCookie(t), cluster: "rmqtest-cluster-" + strings.ToLower(randomCookie(t)[:8])}
	c := &RabbitCluster{Nodes: make([]*RabbitServer, n)}
	for i := range c.Nodes {
		c.Nodes[i] = newRabbit(t, opts)
	}

	// Boots are slow (see rabbitStartTimeout): all at once.
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range c.Nodes {
		wg.Go(func() { errs[i] = s.start() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			for _, s := range c.Nodes {
				s.logShown = true // each error carries its log; the others' logs add nothing
			}
			t.Fatal(errors.Join(errs...))
		}
	}
	booted := time.Since(start)

	first := c.Nodes[0].Node()
	for _, s := range c.Nodes[1:] {
		for _, args := range [][]string{{"stop_app"}, {"join_cluster", first}, {"start_app"}} {
			_, err := s.Ctl(args...)
			require.NoError(t, err)
		}
		waitFor(t, rabbitStartTimeout, "rabbitmq "+s.node+" to accept AMQP connections after joining the cluster", s.checkReady)
		s.started = time.Now() // the application started again (see RabbitQueueSettleTime)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d running members in the cluster", n), func() error {
		running, err := c.Running()
		if err == nil && len(running) != n {
			err = fmt.Errorf("running members: %v", running)
		}
		return err
	})
	t.Logf("rabbitmq cluster of %d nodes (%s): booted in %s, joined in %s more", n, c.URL(),
		booted.Round(time.Millisecond), (time.Since(start) - booted).Round(time.Millisecond))
	return c
}

// URL is the cluster's RABBITMQ_URL: every node's URL, comma-separated.
func (c *RabbitCluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// live is a node whose process runs, to ask about the cluster.
func (c *RabbitCluster) live() (*RabbitServer, error) {
	for _, s := range c.Nodes {
		if s.Running() {
			return s, nil
		}
	}
	return nil, errors.New("no node of the cluster runs")
}

// Running lists the members running, as a live node sees them.
func (c *RabbitCluster) Running() ([]string, error) {
	s, err := c.live()
	if err != nil {
		return nil, err
	}
	out, err := s.Ctl("cluster_status", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var status struct {
		Running []string `json:"running_nodes"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		return nil, fmt.Errorf("cluster_status printed %q: %w", out, err)
	}
	return status.Running, nil
}

// QuorumQueue is where a quorum queue's replicas are, as a live node sees
// them.
type QuorumQueue struct {
	Leader  *RabbitServer // nil when it has none (an election is on)
	Members []string      // node names
	Online  []string
}

// Queue describes the quorum queue named name.
func (c *RabbitCluster) Queue(name string) (QuorumQueue, error) {
	s, err := c.live()
	if err != nil {
		return QuorumQueue{}, err
	}
	out, err := s.Ctl("list_queues", "name", "leader", "members", "online", "--formatter", "json")
	if err != nil {
		return QuorumQueue{}, err
	}
	var queues []struct {
		Name    string   `json:"name"`
		Leader  string   `json:"leader"`
		Members []string `json:"members"`
		Online  []string `json:"online"`
	}
	if err := json.Unmarshal([]byte(out), &queues); err != nil {
		return QuorumQueue{}, fmt.Errorf("list_queues printed %q: %w", out, err)
	}
	for _, q := range queues {
		if q.Name != name {
			continue
		}
		qq := QuorumQueue{Members: q.Members, Online: q.Online}
		for _, s := range c.Nodes {
			if s.node == q.Leader {
				qq.Leader = s
			}
		}
		return qq, nil
	}
	return QuorumQueue{}, fmt.Errorf("no queue %s", name)
}
