package rank

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// slowReader answers with the number of its read (1, 2, ...), counted when
// the read begins, after a pause: a fake for a pure unit test.
type slowReader struct {
	started atomic.Int64
	pause   time.Duration
	failing atomic.Bool // answer errBoom
}

var errBoom = errors.New("redis is down")

func (r *slowReader) BoardTop(ctx context.Context, _ claim.Board, offset, limit int) ([]claim.ProviderTotal, error) {
	n := r.started.Add(1)
	time.Sleep(r.pause)
	if r.failing.Load() {
		return nil, errBoom
	}
	return []claim.ProviderTotal{{ProviderNPI: strconv.FormatInt(n, 10), Version: int64(1000*offset + limit)}}, nil
}

// Lookups share reads, and every lookup is answered by a read that began
// after it arrived.
func TestCoalescedReadsAreFreshAndShared(t *testing.T) {
	t.Parallel()
	fake := &slowReader{pause: 3 * time.Millisecond}
	c := newCoalesced(fake, time.Second)
	var wg sync.WaitGroup
	const lookups = 300
	for i := range lookups {
		wg.Go(func() {
			time.Sleep(time.Duration(i%30) * time.Millisecond) // arrivals spread over reads
			before := fake.started.Load()                      // reads begun before this lookup
			top, err := c.BoardTop(context.Background(), claim.AllTime, 0, 10)
			if !(err == nil && len(top) == 1) {
				t.Errorf("lookup %d: %v %v", i, top, err)
				return
			}
			n, _ := strconv.ParseInt(top[0].ProviderNPI, 10, 64)
			if n <= before {
				t.Errorf("lookup %d answered by read %d, which began before it arrived (after read %d)", i, n, before)
			}
		})
	}
	wg.Wait()
	reads := fake.started.Load()
	require.Less(t, reads, int64(lookups/3), "lookups share reads")
	require.Positive(t, reads)

	// Another limit is another read.
	top, err := c.BoardTop(context.Background(), claim.AllTime, 0, 5)
	require.NoError(t, err)
	require.Equal(t, int64(5), top[0].Version)
}

// A failed read fails every lookup it answers; a lookup whose caller gives
// up returns at once; the next lookups read again.
func TestCoalescedErrorsAndCancels(t *testing.T) {
	t.Parallel()
	fake := &slowReader{pause: 20 * time.Millisecond}
	fake.failing.Store(true)
	c := newCoalesced(fake, time.Second)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			_, err := c.BoardTop(context.Background(), claim.AllTime, 0, 10)
			if !errors.Is(err, errBoom) {
				t.Errorf("got %v", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := c.BoardTop(ctx, claim.AllTime, 0, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the caller that gave up is not held until the read ends")
	wg.Wait()

	fake.failing.Store(false)
	before := fake.started.Load()
	require.Eventually(t, func() bool {
		top, err := c.BoardTop(context.Background(), claim.AllTime, 0, 10)
		return err == nil && len(top) == 1
	}, time.Second, 10*time.Millisecond)
	require.Greater(t, fake.started.Load(), before)
}

// Lookups of different pages never share a read, and a page's state is
// dropped once no read of it is under way: the map holds only pages being
// read, however many pages are asked for.
func TestCoalescedPagesApartAndForgotten(t *testing.T) {
	t.Parallel()
	fake := &slowReader{pause: 2 * time.Millisecond}
	c := newCoalesced(fake, time.Second)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			offset, limit := 10*(i%7), 1+i%3
			top, err := c.BoardTop(context.Background(), claim.AllTime, offset, limit)
			if err != nil || len(top) != 1 || top[0].Version != int64(1000*offset+limit) {
				t.Errorf("lookup of page (%d, %d) got %v %v", offset, limit, top, err)
			}
		})
	}
	wg.Wait()
	requireForgotten(t, c.coalescer, "no page's state outlives its reads")
}

// rankReader answers a provider's standing with its NPI and the number of
// its read, after a pause: a fake for a pure unit test.
type rankReader struct {
	started atomic.Int64
	pause   time.Duration
}

func (r *rankReader) BoardRank(_ context.Context, b claim.Board, npi string) (claim.Standing, error) {
	n := r.started.Add(1)
	time.Sleep(r.pause)
	return claim.Standing{ProviderNPI: npi + "|" + b.Key(), Rank: n}, nil
}

// Rank lookups share reads per provider and board, never across them.
func TestCoalescedRanksSharePerProviderAndBoard(t *testing.T) {
	t.Parallel()
	fake := &rankReader{pause: 3 * time.Millisecond}
	c := newCoalescedRanks(fake, time.Second)
	boards := []claim.Board{claim.AllTime, {Window: claim.WindowYear, Period: "2025"}}
	var wg sync.WaitGroup
	const lookups = 300
	for i := range lookups {
		wg.Go(func() {
			npi, b := strconv.Itoa(1000000000+i%3), boards[i%2]
			before := fake.started.Load()
			st, err := c.BoardRank(context.Background(), b, npi)
			if err != nil || st.ProviderNPI != npi+"|"+b.Key() || st.Rank <= before {
				t.Errorf("lookup of %s in %q got %+v %v (reads before it: %d)", npi, b.Key(), st, err, before)
			}
		})
	}
	wg.Wait()
	require.Less(t, fake.started.Load(), int64(lookups/2), "lookups of one provider share reads")
	requireForgotten(t, c.coalescer, "no provider's state outlives its reads")
}

// requireForgotten waits for c to hold no key's state: a read's last
// lookup returns as the read ends, a moment before its state is dropped.
func requireForgotten[K comparable, V any](t *testing.T, c *coalescer[K, V], msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pages) == 0
	}, time.Second, time.Millisecond, msg)
}
