package rank

import (
	"context"
	"sync"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// coalescer shares Redis reads among concurrent lookups of the same key (a
// page of a board), under one rule: a lookup
// is answered only by a read that began after the lookup arrived. So a claim
// acknowledged before a lookup starts (its totals were written to Redis
// before its answer) is always in the lookup's answer.
//
// A lookup that finds no read of its key under way starts one. A lookup that
// arrives while one is under way cannot use it (it began too early): it
// waits for the next read, which starts as soon as the current one ends and
// answers every lookup that arrived meanwhile. However many lookups arrive,
// at most one read per key is under way, and each lookup waits for at most
// two. A key's state lives only while a read of it is under way, so the
// states held are those of the keys being read.
type coalescer[K comparable, V any] struct {
	read    func(ctx context.Context, key K) (V, error)
	timeout time.Duration // of one shared read

	mu    sync.Mutex
	pages map[K]*readState[V]
}

type readState[V any] struct {
	running bool
	next    *sharedRead[V] // the read that starts when the running one ends
}

type sharedRead[V any] struct {
	done chan struct{}
	val  V // shared by its lookups: read only
	err  error
}

func newCoalescer[K comparable, V any](read func(context.Context, K) (V, error), timeout time.Duration) *coalescer[K, V] {
	return &coalescer[K, V]{read: read, timeout: timeout, pages: map[K]*readState[V]{}}
}

// get answers key from a read that began after the call.
func (c *coalescer[K, V]) get(ctx context.Context, key K) (V, error) {
	c.mu.Lock()
	st := c.pages[key]
	if st == nil {
		st = &readState[V]{}
		c.pages[key] = st
	}
	var r *sharedRead[V]
	if !st.running {
		st.running = true
		r = &sharedRead[V]{done: make(chan struct{})}
		go c.run(key, r)
	} else {
		if st.next == nil {
			st.next = &sharedRead[V]{done: make(chan struct{})}
		}
		r = st.next
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.val, r.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// run makes read r, then each read that gathered lookups meanwhile, until
// none did. Its reads have a deadline of their own: no one caller's end may
// cut short a read others wait for.
func (c *coalescer[K, V]) run(key K, r *sharedRead[V]) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		r.val, r.err = c.read(ctx, key)
		cancel()
		close(r.done)
		c.mu.Lock()
		st := c.pages[key]
		r, st.next = st.next, nil
		if r == nil {
			delete(c.pages, key)
		}
		c.mu.Unlock()
	}
}

// page is a top lookup's board, offset and limit.
type page struct {
	board         claim.Board
	offset, limit int
}

// coalesced is a TopReader whose concurrent lookups of one page share reads.
type coalesced struct {
	*coalescer[page, []claim.ProviderTotal]
}

func newCoalesced(reader TopReader, timeout time.Duration) coalesced {
	return coalesced{newCoalescer(func(ctx context.Context, p page) ([]claim.ProviderTotal, error) {
		return reader.BoardTop(ctx, p.board, p.offset, p.limit)
	}, timeout)}
}

// BoardTop answers from a read that began after the call.
func (c coalesced) BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, error) {
	return c.get(ctx, page{b, offset, limit})
}

// standing names a rank lookup: its board and provider.
type standing struct {
	board claim.Board
	npi   string
}

// rankRounds answers concurrent rank lookups, of any providers and boards,
// in shared rounds: one pipelined Redis round answers every lookup that
// arrived while the round before it ran. A lookup joins the next round,
// which starts as soon as the one under way ends (at once when none is), so
// it is answered by a read that began after it arrived, under coalescer's
// rule. At most one round is under way, of at most maxRound lookups.
type rankRounds struct {
	redis   *Redis
	timeout time.Duration // of one round

	mu      sync.Mutex
	next    []*rankLookup
	running bool
}

// maxRound bounds the lookups of one round, and so its pipeline.
const maxRound = 256

type rankLookup struct {
	rankQuery
	done chan struct{}
}

// BoardRank answers from a round that began after the call.
func (rr *rankRounds) BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, error) {
	l := &rankLookup{rankQuery: rankQuery{board: b, npi: npi}, done: make(chan struct{})}
	rr.mu.Lock()
	rr.next = append(rr.next, l)
	if !rr.running {
		rr.running = true
		go rr.run()
	}
	rr.mu.Unlock()
	select {
	case <-l.done:
		return l.st, l.err
	case <-ctx.Done():
		return claim.Standing{}, ctx.Err()
	}
}

// run makes rounds until no lookup waits. Each has a deadline of its own:
// no one caller's end may cut short a round others wait for.
func (rr *rankRounds) run() {
	for {
		rr.mu.Lock()
		n := min(len(rr.next), maxRound)
		if n == 0 {
			rr.running = false
			rr.mu.Unlock()
			return
		}
		round := rr.next[:n:n]
		rr.next = rr.next[n:]
		rr.mu.Unlock()
		// Lookups of one provider in one board in the same round share
		// its read (popular providers are looked up most).
		first := make(map[standing]*rankQuery, len(round))
		qs := make([]*rankQuery, 0, len(round))
		for _, l := range round {
			key := standing{l.board, l.npi}
			if first[key] == nil {
				first[key] = &l.rankQuery
				qs = append(qs, &l.rankQuery)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), rr.timeout)
		rr.redis.boardRanks(ctx, qs)
		cancel()
		for _, l := range round {
			if q := first[standing{l.board, l.npi}]; q != &l.rankQuery {
				l.st, l.err = q.st, q.err
			}
			close(l.done)
		}
	}
}
