package ingest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// The batcher is the group commit. Claims from concurrent requests wait in
// one bounded backlog (its metrics say "group-commit queue"); a few writers
// each take what has gathered (up to a size, or for at most a
// couple of milliseconds after the first claim) and store it as one batch:
// one transaction, one statement per table, one Redis round trip. A request
// is answered only once its claim is committed (or known refused).

// errShuttingDown refuses claims once the service is closing.
var errShuttingDown = &claim.RetryAfter{
	Err: errors.Join(claim.ErrUnavailable, errors.New("claimd is shutting down")), After: time.Second,
}

// errBatcherFull refuses a claim when the backlog is full: the service takes
// claims no faster than Postgres commits them, instead of growing memory.
var errBatcherFull = &claim.RetryAfter{Err: claim.ErrBusy, After: time.Second}

// waiting is a claim waiting for its batch.
type waiting struct {
	ctx  context.Context // the request's: a request that gave up before its batch is left out
	mode string          // how the claim came (sync, batch, async), for the metrics
	// batch marks a claim of a batch request: it holds a place of
	// batchRoom from when it is added until a writer takes it.
	batch bool
	item  claim.Pending
	done  chan outcome // buffered: the writer never waits for the request
	// state is claimed once, by a writer taking the claim into a batch or by
	// its request giving up first: whichever wins decides.
	state atomic.Int32
}

const (
	stateWaiting int32 = iota
	stateTaken
	stateAbandoned
)

// wait returns the claim's outcome. If ctx ends while the claim is still
// waiting, the claim is left out of every batch and wait returns ctx's error
// at once; once a writer has it, wait waits for the batch (bounded by its
// own deadline), since the claim may then be stored.
func (q *waiting) wait(ctx context.Context) outcome {
	select {
	case out := <-q.done:
		return out
	case <-ctx.Done():
		if q.state.CompareAndSwap(stateWaiting, stateAbandoned) {
			return outcome{err: ctx.Err()}
		}
		return <-q.done
	}
}

type outcome struct {
	stored claim.Stored
	err    error
}

type batcher struct {
	store   ClaimStore
	ranking Ranking
	cfg     Config
	metrics *metrics
	log     *slog.Logger

	mu      sync.RWMutex // guards closed against sends on a closed backlog
	closed  bool
	in      chan *waiting // the backlog
	writers sync.WaitGroup
	// batchRoom holds a token for each claim of a batch request waiting in
	// the backlog: batches never take more than half of it. A writer frees
	// the token when it takes the claim, whatever the request does next, so
	// a batch whose sender stalls holds no room while it waits.
	batchRoom chan struct{}
}

func newBatcher(st ClaimStore, ranking Ranking, cfg Config, m *metrics, log *slog.Logger) *batcher {
	c := &batcher{store: st, ranking: ranking, cfg: cfg, metrics: m, log: log,
		in: make(chan *waiting, cfg.Backlog), batchRoom: make(chan struct{}, max(1, cfg.Backlog/2))}
	m.queueDepth(func() float64 { return float64(len(c.in)) })
	for range cfg.Writers {
		c.writers.Add(1)
		go c.write()
	}
	return c
}

// add puts a claim in the backlog. A claim of a batch request waits for
// room, first in the batches' half of the backlog (the request can be slowed
// down); any other claim is refused at once when the backlog is full (a single
// request, whose client retries).
func (c *batcher) add(ctx context.Context, q *waiting) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errShuttingDown
	}
	if !q.batch {
		select {
		case c.in <- q:
			return nil
		default:
			c.metrics.queueRejections.Inc()
			return errBatcherFull
		}
	}
	select {
	case c.batchRoom <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case c.in <- q:
		return nil
	case <-ctx.Done():
		<-c.batchRoom
		return ctx.Err()
	}
}

// taken is called for each claim a writer takes from the backlog.
func (c *batcher) taken(q *waiting) {
	if q.batch {
		<-c.batchRoom
	}
}

// close stops taking claims and returns when every waiting claim is stored
// (or refused) and answered.
func (c *batcher) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
	c.mu.Unlock()
	c.writers.Wait()
}

// write gathers batches from the backlog and flushes them, until the backlog is
// closed and empty.
func (c *batcher) write() {
	defer c.writers.Done()
	batch := make([]*waiting, 0, c.cfg.BatchSize)
	timer := time.NewTimer(0)
	<-timer.C
	for {
		first, ok := <-c.in
		if !ok {
			return
		}
		c.taken(first)
		batch = append(batch[:0], first)
		lines := len(first.item.Claim.Lines)
		timer.Reset(c.cfg.BatchWait)
	gather:
		for len(batch) < c.cfg.BatchSize && lines < c.cfg.BatchLines {
			select {
			case q, ok := <-c.in:
				if !ok {
					break gather
				}
				c.taken(q)
				batch = append(batch, q)
				lines += len(q.item.Claim.Lines)
			case <-timer.C:
				break gather
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		c.flush(batch)
		clear(batch)
	}
}

// flush stores one batch and answers its requests.
func (c *batcher) flush(batch []*waiting) {
	live := make([]*waiting, 0, len(batch))
	for _, q := range batch {
		if !q.state.CompareAndSwap(stateWaiting, stateTaken) {
			continue // its request gave up and has its answer
		}
		if err := q.ctx.Err(); err != nil {
			q.done <- outcome{err: err} // gave up while waiting: nothing of it is stored
			continue
		}
		live = append(live, q)
	}
	if len(live) == 0 {
		return
	}
	// The batch runs on its own deadline: once it is sent, a client hanging
	// up must not make the outcome unknown for the others.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.FlushTimeout)
	defer cancel()
	items := make([]claim.Pending, len(live))
	for i, q := range live {
		items[i] = q.item
	}
	start := time.Now()
	b, err := c.store.InsertClaims(ctx, items)
	if err != nil && len(live) > 1 && !errors.Is(err, claim.ErrUnavailable) {
		// Something in one claim made Postgres refuse the batch. Each claim
		// is all-or-nothing on its own: store them one by one, so the bad
		// one fails alone.
		c.metrics.batchFallbacks.Inc()
		c.log.Warn("batch refused; storing its claims one by one", "claims", len(live), "err", err)
		c.flushOneByOne(live)
		return
	}
	if err == nil {
		c.metrics.flushDuration.Observe(time.Since(start).Seconds())
		c.metrics.batchClaims.Observe(float64(len(live)))
	}
	if err != nil {
		for _, q := range live {
			q.done <- outcome{err: err}
		}
		return
	}
	c.count(live, b.Claims)
	c.rank(append(b.Totals, b.Boards...))
	for i, q := range live {
		q.done <- outcome{stored: b.Claims[i]}
	}
}

func (c *batcher) flushOneByOne(live []*waiting) {
	outcomes := make([]outcome, len(live))
	var totals []claim.ProviderTotal
	for i, q := range live {
		// Each on a deadline of its own: the failed batch may have used up
		// most of the first.
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.FlushTimeout)
		b, err := c.store.InsertClaims(ctx, []claim.Pending{q.item})
		cancel()
		if err != nil {
			outcomes[i].err = err
			continue
		}
		outcomes[i].stored = b.Claims[0]
		c.count([]*waiting{q}, b.Claims)
		totals = append(append(totals, b.Totals...), b.Boards...) // versions order repeated providers
	}
	c.rank(totals)
	for i, q := range live {
		q.done <- outcomes[i]
	}
}

// count adds the claims a batch stored to the ingest counters.
func (c *batcher) count(items []*waiting, stored []claim.Stored) {
	for i, s := range stored {
		if s.Err == nil && s.ExistingID == "" {
			c.metrics.claims.WithLabelValues(items[i].mode).Inc()
			c.metrics.lines.WithLabelValues(items[i].mode).Add(float64(len(items[i].item.Claim.Lines)))
			var fees, allowed, coinsurance, copay claim.Cents
			for _, l := range items[i].item.Claim.Lines {
				fees, allowed = fees+l.ProviderFees, allowed+l.AllowedFees
				coinsurance, copay = coinsurance+l.MemberCoinsurance, copay+l.MemberCopay
			}
			c.metrics.money.providerFees.Add(float64(fees))
			c.metrics.money.allowedFees.Add(float64(allowed))
			c.metrics.money.coinsurance.Add(float64(coinsurance))
			c.metrics.money.copay.Add(float64(copay))
		}
	}
}

// rank pushes committed totals to Redis, retrying once. The write is
// versioned, so a retry that lands twice changes nothing. When it fails the
// claims still succeed: Postgres is the truth, and reconciliation repairs
// Redis.
func (c *batcher) rank(totals []claim.ProviderTotal) {
	if len(totals) == 0 {
		return
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			c.metrics.rankingRetries.Inc()
			time.Sleep(20 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RankingTimeout)
		_, err = c.ranking.Apply(ctx, totals)
		cancel()
		if err == nil {
			return
		}
	}
	c.metrics.rankingFailures.Inc()
	c.log.Warn("redis ranking not updated; reconciliation will repair it", "providers", len(totals), "err", err)
}
