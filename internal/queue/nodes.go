package queue

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Nodes splits a RABBITMQ_URL into the broker's nodes: one amqp:// URL, or
// those of a cluster's nodes, comma-separated (a comma inside a URL, e.g. in
// a password, is written %2C). The queue's links and the events relay dial
// them alike.
func Nodes(list string) []string {
	var out []string
	for u := range strings.SplitSeq(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return []string{list} // dialing it says what is wrong with it
	}
	return out
}

// Dial connects to the first of nodes that answers, trying them in turn
// from nodes[start], and returns the connection and its node's index. Each
// dial is bounded by cfg.Dial's timeout, so a dead node costs at most that
// (a refused connection, nothing).
func Dial(nodes []string, start int, cfg amqp.Config) (*amqp.Connection, int, error) {
	var errs []error
	for i := range nodes {
		k := (start + i) % len(nodes)
		conn, err := amqp.DialConfig(nodes[k], cfg)
		if err == nil {
			return conn, k, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", NodeName(nodes, k), withoutURL(err)))
	}
	return nil, -1, errors.Join(errs...)
}

// NodeName names nodes[k] for logs and errors by its host and port: never
// the whole URL, which holds the password.
func NodeName(nodes []string, k int) string {
	u, err := amqp.ParseURI(nodes[k])
	if err != nil {
		return fmt.Sprintf("RABBITMQ_URL node %d of %d", k+1, len(nodes))
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}

// withoutURL drops the URL a parse error quotes (password and all), keeping
// what is wrong with it.
func withoutURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("not a valid URL: %w", ue.Err)
	}
	return err
}
