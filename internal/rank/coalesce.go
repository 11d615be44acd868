package rank

import (
	"context"
	"sync"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// coalesced shares Redis reads among concurrent lookups of the same page,
// under one rule: a lookup is answered only by a read that began after the
// lookup arrived. So a claim acknowledged before a lookup starts (its totals
// were written to Redis before its answer) is always in the lookup's answer.
//
// A lookup that finds no read of its page under way starts one. A lookup
// that arrives while one is under way cannot use it (it began too early): it
// waits for the next read, which starts as soon as the current one ends and
// answers every lookup that arrived meanwhile. However many lookups arrive,
// at most one read per limit is under way, and each lookup waits for at most
// two. A page's state lives only while a read of it is under way, so the
// states held are those of the pages being read.
type coalesced struct {
	reader  TopReader
	timeout time.Duration // of one shared read

	mu    sync.Mutex
	pages map[page]*readState
}

// page is a lookup's board, offset and limit.
type page struct {
	board         claim.Board
	offset, limit int
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
	return &coalesced{reader: reader, timeout: timeout, pages: map[page]*readState{}}
}

// BoardTop answers from a read that began after the call.
func (c *coalesced) BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, error) {
	pg := page{b, offset, limit}
	c.mu.Lock()
	st := c.pages[pg]
	if st == nil {
		st = &readState{}
		c.pages[pg] = st
	}
	var r *read
	if !st.running {
		st.running = true
		r = &read{done: make(chan struct{})}
		go c.run(pg, r)
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
func (c *coalesced) run(pg page, r *read) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		r.top, r.err = c.reader.BoardTop(ctx, pg.board, pg.offset, pg.limit)
		cancel()
		close(r.done)
		c.mu.Lock()
		st := c.pages[pg]
		r, st.next = st.next, nil
		if r == nil {
			delete(c.pages, pg)
		}
		c.mu.Unlock()
	}
}
