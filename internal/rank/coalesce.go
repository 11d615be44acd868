package rank

import (
	"context"
	"sync"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// coalesced shares Redis reads among concurrent lookups of the same limit,
// under one rule: a lookup is answered only by a read that began after the
// lookup arrived. So a claim acknowledged before a lookup starts (its totals
// were written to Redis before its answer) is always in the lookup's answer.
//
// A lookup that finds no read of its limit under way starts one. A lookup
// that arrives while one is under way cannot use it (it began too early): it
// waits for the next read, which starts as soon as the current one ends and
// answers every lookup that arrived meanwhile. However many lookups arrive,
// at most one read per limit is under way, and each lookup waits for at most
// two.
type coalesced struct {
	reader  TopReader
	timeout time.Duration // of one shared read

	mu     sync.Mutex
	limits map[int]*readState
}

type readState struct {
	running bool
	next    *read // the read that starts when the running one ends
}

type read struct {
	done chan struct{}
	top  []claim.ProviderTotal // shared by its lookups: read only
	err  error
}

func newCoalesced(reader TopReader, timeout time.Duration) *coalesced {
	return &coalesced{reader: reader, timeout: timeout, limits: map[int]*readState{}}
}

// TopProviders answers from a read that began after the call.
func (c *coalesced) TopProviders(ctx context.Context, limit int) ([]claim.ProviderTotal, error) {
	c.mu.Lock()
	st := c.limits[limit]
	if st == nil {
		st = &readState{}
		c.limits[limit] = st
	}
	var r *read
	if !st.running {
		st.running = true
		r = &read{done: make(chan struct{})}
		go c.run(limit, r)
	} else {
		if st.next == nil {
			st.next = &read{done: make(chan struct{})}
		}
		r = st.next
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.top, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run makes read r, then each read that gathered lookups meanwhile, until
// none did. Its reads have a deadline of their own: no one caller's end may
// cut short a read others wait for.
func (c *coalesced) run(limit int, r *read) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		r.top, r.err = c.reader.TopProviders(ctx, limit)
		cancel()
		close(r.done)
		c.mu.Lock()
		st := c.limits[limit]
		r, st.next = st.next, nil
		if r == nil {
			st.running = false
		}
		c.mu.Unlock()
	}
}
