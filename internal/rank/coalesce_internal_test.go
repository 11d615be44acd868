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
	"github.com/claim-process/claim-process/internal/testenv"
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

// Rank lookups in shared rounds answer each provider and board rightly,
// and never from a round that began before the lookup: a total written
// before a lookup starts is in its answer, however many lookups run.
func TestRankRoundsAreRightAndFresh(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.MustSharedRedis(t)
	r := NewRedis(client, Keys{Prefix: prefix})
	ctx := context.Background()
	year := claim.Board{Window: claim.WindowYear, Period: claim.PeriodOf(claim.WindowYear, time.Now())}
	var totals []claim.ProviderTotal
	for i := range 3 {
		npi := strconv.Itoa(1000000000 + i)
		totals = append(totals, claim.ProviderTotal{ProviderNPI: npi, NetFee: claim.Cents(100 * i), Version: 1, Claims: 1},
			claim.ProviderTotal{Board: year.Key(), ProviderNPI: npi, NetFee: claim.Cents(-100 * i), Version: 1, Claims: 2})
	}
	_, err := r.Apply(ctx, totals)
	require.NoError(t, err)
	require.NoError(t, client.Set(ctx, r.shards[0].keys.Complete(), "1", 0).Err())
	rounds := &rankRounds{redis: r, timeout: 5 * time.Second}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 { // lookups of every provider in both boards, all along
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				b, npi := []claim.Board{claim.AllTime, year}[n%2], strconv.Itoa(1000000000+(i+n)%3)
				st, err := rounds.BoardRank(ctx, b, npi)
				if err != nil || st.ProviderNPI != npi || (b == year) != (st.Claims == 2) {
					t.Errorf("lookup of %s in %q: %+v %v", npi, b.Key(), st, err)
					return
				}
			}
		})
	}
	for v := int64(2); v < 200; v++ {
		_, err := r.Apply(ctx, []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: claim.Cents(v), Version: v, Claims: 1}})
		require.NoError(t, err)
		st, err := rounds.BoardRank(ctx, claim.AllTime, "1000000001")
		require.NoError(t, err)
		require.Equal(t, claim.Cents(v), st.NetFee, "a total written before the lookup is in its answer")
	}
	close(stop)
	wg.Wait()
	rounds.mu.Lock()
	defer rounds.mu.Unlock()
	require.Empty(t, rounds.next)
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
