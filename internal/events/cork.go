package events

import (
	"net"
	"sync"
)

// maxCorked bounds what a corked connection holds before it writes anyway.
const maxCorked = 1 << 20

// corkedConn is the relay's connection to the broker. amqp091-go writes every
// publish to the socket as soon as it is framed, one write(2) each; while the
// relay publishes a batch it corks the connection, so that the batch's frames
// gather in memory and leave in a few large writes when it uncorks, before
// waiting for the confirms. Nothing waits on a frame that is held: a publish
// needs no answer, and a heartbeat held for the few milliseconds of a batch
// is far inside its interval.
type corkedConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	held   []byte
	err    error // the first failed write: the connection is closed, and every later write fails
}

// cork holds the writes from now on, until uncork.
func (c *corkedConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was held and lets writes through again. If the write
// fails the connection is closed, so that amqp091-go's reader sees it end
// and the publishes held are nacked, as when the broker goes away.
func (c *corkedConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flush()
}

func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked && len(c.held)+len(p) <= maxCorked {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.fail(err)
	}
	return n, err
}

// flush writes what is held; c.mu is held.
func (c *corkedConn) flush() error {
	if c.err != nil || len(c.held) == 0 {
		return c.err
	}
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		c.fail(err)
	}
	return err
}

func (c *corkedConn) fail(err error) {
	c.err = err
	_ = c.Conn.Close()
}
