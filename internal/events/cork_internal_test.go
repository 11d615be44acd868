package events

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writes records each write(2) a corkedConn makes.
type writes struct {
	net.Conn
	got    []string
	fail   error
	closed bool
}

func (w *writes) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	w.got = append(w.got, string(p))
	return len(p), nil
}

func (w *writes) Close() error { w.closed = true; return nil }

func TestCorkedConnHoldsWritesUntilUncorked(t *testing.T) {
	w := &writes{}
	c := &corkedConn{Conn: w}

	_, err := c.Write([]byte("open"))
	require.NoError(t, err)
	assert.Equal(t, []string{"open"}, w.got, "uncorked, a write goes out at once")

	c.cork()
	for _, frame := range []string{"method", "header", "body"} {
		n, err := c.Write([]byte(frame))
		require.NoError(t, err)
		assert.Equal(t, len(frame), n)
	}
	assert.Equal(t, []string{"open"}, w.got, "corked, nothing goes out")
	require.NoError(t, c.uncork())
	assert.Equal(t, []string{"open", "methodheaderbody"}, w.got, "uncorked, what was held goes out in one write")

	_, err = c.Write([]byte("heartbeat"))
	require.NoError(t, err)
	assert.Equal(t, []string{"open", "methodheaderbody", "heartbeat"}, w.got)
}

func TestCorkedConnWritesWhenFull(t *testing.T) {
	w := &writes{}
	c := &corkedConn{Conn: w}
	c.cork()
	big := make([]byte, maxCorked-1)
	_, err := c.Write(big)
	require.NoError(t, err)
	assert.Empty(t, w.got)
	_, err = c.Write([]byte("xy"))
	require.NoError(t, err)
	require.Len(t, w.got, 2, "past maxCorked, what was held and the write go out")
	assert.Len(t, w.got[0], maxCorked-1)
	assert.Equal(t, "xy", w.got[1])
	require.NoError(t, c.uncork())
	assert.Len(t, w.got, 2, "nothing more was held")
}

func TestCorkedConnClosesWhenAWriteFails(t *testing.T) {
	broken := errors.New("broken pipe")
	w := &writes{}
	c := &corkedConn{Conn: w}
	c.cork()
	_, err := c.Write([]byte("publish"))
	require.NoError(t, err)
	w.fail = broken
	require.ErrorIs(t, c.uncork(), broken)
	assert.True(t, w.closed, "a failed write closes the connection, so that amqp091-go sees it end")
	w.fail = nil
	_, err = c.Write([]byte("later"))
	require.ErrorIs(t, err, broken, "and every later write fails")
	assert.Empty(t, w.got)
}
