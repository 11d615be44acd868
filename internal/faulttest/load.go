package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// newGenerator returns the generator of a load's claims: 1 to 4 lines,
// over exactly 100 providers drawn uniformly, so /top-providers?limit=100
// shows every one that has a total and the whole ranking can be compared.
func newGenerator(seed uint64) *loadkit.Generator {
	g := loadkit.NewGenerator(int64(seed), loadkit.NPIPool(loadkit.TopListMax), 1.1, 4)
	g.Uniform()
	return g
}

// Claim is one logical claim: what the suite sent and everything it heard
// back, over every attempt and copy.
type Claim struct {
	loadkit.Claim        // ExternalID is the claim_id field: unique per logical claim
	Key           string // the Idempotency-Key header as sent; "" for none
	Body          []byte

	mu        sync.Mutex
	acked     bool            // some attempt got a 2xx
	ids       map[string]bool // claim ids in the 2xx answers
	fresh     int             // 2xx answers without Idempotency-Replayed: true
	replayed  int             // 2xx answers with Idempotency-Replayed: true
	refusal   int             // status of the last final refusal (4xx but 409/429), 0 if none
	refusedAs string          // its body, for the failure message
	problems  []string        // answers that break the API contract
	history   []string        // every answer in order: "201", "409", "no answer", ...

	reversalSent bool // a POST /claims/{id}/reversal was sent for it (see Reversals)
	reversed     bool // one of them was answered 200 with the claim reversed
}

// Outcome reports the claim's outcome. A claim both acknowledged and refused
// counts as acknowledged; verification reports the contradiction.
func (c *Claim) Outcome() loadkit.Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.acked:
		return loadkit.Acked
	case c.refusal != 0:
		return loadkit.Refused
	default:
		return loadkit.Unknown
	}
}

// newClaim generates a valid claim (non-negative net fees) and its body.
func newClaim(gen *loadkit.Generator, externalID string) *Claim {
	c := gen.Claim(externalID)
	return &Claim{Claim: *c, Body: c.JSON()}
}

// Stats counts every HTTP answer the load got.
type Stats struct {
	Requests     atomic.Int64 // POSTs sent, every attempt and copy
	Created      atomic.Int64 // 201 without Idempotency-Replayed
	Accepted     atomic.Int64 // 202: queued (async mode), stored later by a worker
	OK           atomic.Int64 // 200 without Idempotency-Replayed: a resubmitted claim_id
	Replayed     atomic.Int64 // 2xx with Idempotency-Replayed: true
	Conflict     atomic.Int64 // 409: same key in flight
	Unavailable  atomic.Int64 // 503
	Other5xx     atomic.Int64 // any other 5xx, or a 503 without Retry-After
	Refused      atomic.Int64 // final 4xx
	NoAnswer     atomic.Int64 // connection refused or reset, timeout
	TimedOut     atomic.Int64 // of those, the client gave up waiting (10s)
	NoRetryAfter atomic.Int64 // 409 or 503 without Retry-After

	slowest5xx atomic.Int64 // nanoseconds: the longest wait for any 5xx answer
}

// Slowest5xx is the longest the server took to answer with a 5xx: a service
// whose database is down must say so fast, not hang until clients give up.
func (s *Stats) Slowest5xx() time.Duration { return time.Duration(s.slowest5xx.Load()) }

func (s *Stats) record5xx(took time.Duration) {
	for {
		old := s.slowest5xx.Load()
		if int64(took) <= old || s.slowest5xx.CompareAndSwap(old, int64(took)) {
			return
		}
	}
}

// Sender posts claims with bounded retries, the way a payment service would:
// a 2xx (201 stored, 200 stored before, 202 queued in async mode) is the
// acknowledgement; on no answer, 409, 429 or 5xx it sends the same claim
// again (same claim_id, same key) to the next target, after the Retry-After
// the server asked for (at most 2s) or else a short exponential backoff, for
// at most RetryFor.
type Sender struct {
	Targets     []string // base URLs; attempts rotate over them
	APIKey      string   // sent as Authorization: Bearer, when not ""
	Stats       *Stats
	MaxAttempts int
	RetryFor    time.Duration
	client      *http.Client
}

// NewSender returns a sender whose HTTP client times out after 10s and which
// retries a claim for up to 45s: longer than any outage the suite causes and
// than claimd's 30s idempotency-key lease, which a crashed request leaves
// behind.
func NewSender(targets ...string) *Sender {
	return &Sender{
		Targets:     targets,
		Stats:       &Stats{},
		MaxAttempts: 60,
		RetryFor:    45 * time.Second,
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		},
	}
}

// authorize adds the sender's API key to req.
func (s *Sender) authorize(req *http.Request) {
	if s.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.APIKey)
	}
}

// Send sends c until it gets a 2xx or a final refusal, or runs out of
// attempts or time; first to target number first (mod the number of targets).
func (s *Sender) Send(ctx context.Context, c *Claim, first int) {
	s.retry(ctx, first, func(target string) (bool, time.Duration) { return s.attempt(ctx, c, target) })
}

// retry makes attempts, each to the next target, until one says it is done,
// or the attempts or the time run out: after the Retry-After the server asked
// for (at most 2s), or else a short exponential backoff.
func (s *Sender) retry(ctx context.Context, first int, attempt func(target string) (done bool, retryAfter time.Duration)) {
	deadline := time.Now().Add(s.RetryFor)
	backoff := 50 * time.Millisecond
	for n := 0; ; n++ {
		done, retryAfter := attempt(s.Targets[(first+n)%len(s.Targets)])
		if done || n+1 >= s.MaxAttempts || ctx.Err() != nil {
			return
		}
		wait := backoff + rand.N(backoff)
		backoff = min(2*backoff, time.Second)
		if retryAfter > 0 {
			wait = min(retryAfter, 2*time.Second)
		}
		if time.Now().Add(wait).After(deadline) {
			return
		}
		sleep(ctx, wait)
	}
}

// attempt posts c once and records the answer; it reports whether the answer
// was final (no retry), and the Retry-After it carried.
func (s *Sender) attempt(ctx context.Context, c *Claim, target string) (final bool, retryAfter time.Duration) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"/claims", bytes.NewReader(c.Body))
	if err != nil {
		panic(err) // a fixed method and a valid URL
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Key != "" {
		req.Header.Set("Idempotency-Key", c.Key)
	}
	s.authorize(req)
	s.Stats.Requests.Add(1)
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		s.Stats.NoAnswer.Add(1)
		if netErr, ok := errors.AsType[net.Error](err); ok && netErr.Timeout() {
			s.Stats.TimedOut.Add(1)
		}
		c.addHistory(fmt.Sprintf("%s no answer (%v)", since(start), err))
		return false, 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil { // the answer was cut off: as good as none
		s.Stats.NoAnswer.Add(1)
		c.addHistory(fmt.Sprintf("%s cut off", since(start)))
		return false, 0
	}
	if resp.StatusCode >= 500 {
		s.Stats.record5xx(time.Since(start))
	}
	c.addHistory(fmt.Sprintf("%s %d", since(start), resp.StatusCode))
	replayed := strings.EqualFold(resp.Header.Get("Idempotency-Replayed"), "true")
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		retryAfter = time.Duration(secs) * time.Second
	}

	switch code := resp.StatusCode; {
	case code == http.StatusOK || code == http.StatusCreated || code == http.StatusAccepted:
		switch {
		case replayed:
			s.Stats.Replayed.Add(1)
		case code == http.StatusCreated:
			s.Stats.Created.Add(1)
		case code == http.StatusAccepted:
			s.Stats.Accepted.Add(1)
		default:
			s.Stats.OK.Add(1)
		}
		c.recordAck(body, replayed)
		return true, 0
	case code == http.StatusConflict || code == http.StatusServiceUnavailable:
		if code == http.StatusConflict {
			s.Stats.Conflict.Add(1)
		} else {
			s.Stats.Unavailable.Add(1)
		}
		if resp.Header.Get("Retry-After") == "" {
			s.Stats.NoRetryAfter.Add(1)
			c.addProblem(fmt.Sprintf("%d without Retry-After: %s", code, loadkit.Snippet(body)))
		}
		return false, retryAfter
	case code == http.StatusTooManyRequests:
		return false, retryAfter
	case code >= 500:
		s.Stats.Other5xx.Add(1)
		c.addProblem(fmt.Sprintf("%d: %s", code, loadkit.Snippet(body)))
		return false, retryAfter
	default:
		s.Stats.Refused.Add(1)
		c.mu.Lock()
		c.refusal, c.refusedAs = code, loadkit.Snippet(body)
		c.mu.Unlock()
		return true, 0
	}
}

// SendBatch posts claims in one POST /claims/batch, then sends again, as a
// new batch, every claim that got no final answer (no answer at all, a 5xx
// for it or the whole request, or a batch cut short), with the same retry
// budget as Send.
func (s *Sender) SendBatch(ctx context.Context, claims []*Claim, first int) {
	s.retry(ctx, first, func(target string) (bool, time.Duration) {
		var retryAfter time.Duration
		claims, retryAfter = s.attemptBatch(ctx, claims, target)
		return len(claims) == 0, retryAfter
	})
}

// attemptBatch posts claims as one batch, records each claim's answer, and
// returns the claims still without a final one.
func (s *Sender) attemptBatch(ctx context.Context, claims []*Claim, target string) ([]*Claim, time.Duration) {
	bodies := make([][]byte, len(claims))
	for i, c := range claims {
		bodies[i] = c.Body
	}
	body := append(append([]byte("["), bytes.Join(bodies, []byte(","))...), ']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"/claims/batch", bytes.NewReader(body))
	if err != nil {
		panic(err) // a fixed method and a valid URL
	}
	req.Header.Set("Content-Type", "application/json")
	s.authorize(req)
	s.Stats.Requests.Add(1)
	start := time.Now()
	all := func(h string) {
		for _, c := range claims {
			c.addHistory(h)
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.Stats.NoAnswer.Add(1)
		all(fmt.Sprintf("%s batch: no answer (%v)", since(start), err))
		return claims, 0
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		s.Stats.NoAnswer.Add(1)
		all(fmt.Sprintf("%s batch: cut off", since(start)))
		return claims, 0
	}
	var answer struct {
		Results []struct {
			Index  int `json:"index"`
			Status int `json:"status"`
		} `json:"results"`
	}
	var items struct { // the same results, each kept whole for recordAck
		Results []json.RawMessage `json:"results"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &answer) != nil || json.Unmarshal(raw, &items) != nil {
		all(fmt.Sprintf("%s batch: %d", since(start), resp.StatusCode))
		if resp.StatusCode >= 500 {
			s.Stats.record5xx(time.Since(start))
			s.Stats.Unavailable.Add(1)
			return claims, 0
		}
		for _, c := range claims {
			c.addProblem(fmt.Sprintf("batch answered %d: %s", resp.StatusCode, loadkit.Snippet(raw)))
		}
		return nil, 0
	}
	final := make([]bool, len(claims))
	var retryAfter time.Duration
	for n, r := range answer.Results {
		if r.Index < 0 || r.Index >= len(claims) {
			claims[0].addProblem(fmt.Sprintf("batch result for position %d of %d", r.Index, len(claims)))
			continue
		}
		c := claims[r.Index]
		c.addHistory(fmt.Sprintf("%s batch %d", since(start), r.Status))
		switch code := r.Status; {
		case code == http.StatusOK || code == http.StatusCreated || code == http.StatusAccepted:
			switch code {
			case http.StatusCreated:
				s.Stats.Created.Add(1)
			case http.StatusAccepted:
				s.Stats.Accepted.Add(1)
			default:
				s.Stats.OK.Add(1)
			}
			c.recordAck(items.Results[n], false)
			final[r.Index] = true
		case code == http.StatusServiceUnavailable:
			s.Stats.Unavailable.Add(1)
			retryAfter = time.Second
		case code >= 500:
			s.Stats.Other5xx.Add(1)
			c.addProblem(fmt.Sprintf("batch item %d: %s", code, loadkit.Snippet(items.Results[n])))
		default:
			s.Stats.Refused.Add(1)
			c.mu.Lock()
			c.refusal, c.refusedAs = code, loadkit.Snippet(items.Results[n])
			c.mu.Unlock()
			final[r.Index] = true
		}
	}
	var rest []*Claim
	for i, c := range claims {
		if !final[i] {
			rest = append(rest, c)
		}
	}
	return rest, retryAfter
}

// recordAck records a 2xx answer and checks it against what was sent.
func (c *Claim) recordAck(body []byte, replayed bool) {
	var got struct {
		ID     string      `json:"id"`
		NetFee json.Number `json:"net_fee"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := dec.Decode(&got)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.acked = true
	if replayed {
		c.replayed++
	} else {
		c.fresh++
	}
	if err != nil || got.ID == "" {
		c.problems = append(c.problems, "2xx without a claim id: "+loadkit.Snippet(body))
		return
	}
	if c.ids == nil {
		c.ids = map[string]bool{}
	}
	c.ids[got.ID] = true
	if want := loadkit.FormatCents(c.NetFee()); got.NetFee.String() != want {
		c.problems = append(c.problems, fmt.Sprintf("2xx with net_fee %s, want %s", got.NetFee, want))
	}
}

// AckedAs records an acknowledgement that came other than as the answer to
// a POST: e.g. a dead letter the operator replayed under its message id. The
// claim must then be stored exactly once, under id.
func (c *Claim) AckedAs(id string) {
	// net_fee as a JSON number with two decimals, the way the API writes it.
	c.recordAck(fmt.Appendf(nil, `{"id":%q,"net_fee":%s}`, id, loadkit.FormatCents(c.NetFee())), false)
}

// Reversal says whether a reversal of the claim was sent, and whether one
// was acknowledged (200, the claim reversed): then its lines must count 0.
// A reversal sent but never acknowledged may or may not have happened.
func (c *Claim) Reversal() (sent, acked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reversalSent, c.reversed
}

// AckedIDs lists the claim ids the acknowledgements named.
func (c *Claim) AckedIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.ids))
}

// Refusal is the status and body of the claim's final refusal (0 if none).
func (c *Claim) Refusal() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusal, c.refusedAs
}

// FreshAnswers counts the 2xx answers not marked Idempotency-Replayed.
func (c *Claim) FreshAnswers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fresh
}

func (c *Claim) addHistory(h string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.history = append(c.history, h)
}

// History lists every answer the claim got, each with the time it took.
func (c *Claim) History() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.history)
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

func (c *Claim) addProblem(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, p)
}

// Plan says how often a claim is sent: one round after the other, each
// round's copies at once. The default, {1}, sends it once.
type Plan []int

// LoadConfig sizes a load run.
type LoadConfig struct {
	Claims   int
	Clients  int
	KeyShare float64              // share of claims sent with an Idempotency-Key
	Plan     func(claim int) Plan // nil: every claim once
	Batch    int                  // > 0: send claims in POST /claims/batch requests of this many
	Rate     float64              // > 0: claims started per second at most (no burst to catch up after a stall); 0: as fast as the clients go
	Timeout  time.Duration        // bound on the whole run; 0 means 2 minutes
	RetryFor time.Duration        // > 0: how long a claim is retried (see NewSender), for outages longer than the default 45s
	Seed     uint64               // 0: random; logged either way, for replaying a failure
	APIKey   string               // sent as Authorization: Bearer, when not ""
}

// Load is a set of generated claims, sent by concurrent clients.
type Load struct {
	t        testing.TB
	cfg      LoadConfig
	Claims   []*Claim
	Sender   *Sender
	gen      *loadkit.Generator // the claims
	rng      *rand.Rand         // which claims carry a key, and in which form
	tag      string
	finished atomic.Int64 // claims whose plan is done
	started  time.Time
	done     chan struct{} // closed when every client has stopped
	Elapsed  time.Duration
}

// NewLoad generates the claims; Start sends them.
func NewLoad(t testing.TB, cfg LoadConfig) *Load {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	t.Logf("load: %d claims, %d clients, seed %d", cfg.Claims, cfg.Clients, cfg.Seed)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	tag := strconv.FormatUint(cfg.Seed%1e6, 36)
	l := &Load{t: t, cfg: cfg, gen: newGenerator(cfg.Seed), rng: rng, tag: tag, done: make(chan struct{})}
	for i := range cfg.Claims {
		c := newClaim(l.gen, fmt.Sprintf("ft-%s-%05d", tag, i))
		if rng.Float64() < cfg.KeyShare {
			// Both forms the IETF draft allows: a structured-field string and a bare token.
			c.Key = fmt.Sprintf("key-%s-%05d", tag, i)
			if rng.IntN(2) == 0 {
				c.Key = `"` + c.Key + `"`
			}
		}
		l.Claims = append(l.Claims, c)
	}
	return l
}

// Extra generates one more claim after the load is over, for a scenario's
// own probes; it is verified with the others.
func (l *Load) Extra(name, key string) *Claim {
	c := newClaim(l.gen, fmt.Sprintf("ft-%s-%s", l.tag, name))
	c.Key = key
	l.Claims = append(l.Claims, c)
	return c
}

// Start sends the claims in the background, spread over the targets: client
// i starts each claim on target i, and retries move on to the next.
func (l *Load) Start(targets ...string) {
	l.Sender = NewSender(targets...)
	l.Sender.APIKey = l.cfg.APIKey
	if l.cfg.RetryFor > 0 { // about one attempt a second (Retry-After: 1) for that long
		l.Sender.RetryFor = l.cfg.RetryFor
		l.Sender.MaxAttempts = max(l.Sender.MaxAttempts, 2*int(l.cfg.RetryFor/time.Second))
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	queue := make(chan int)
	var wg sync.WaitGroup
	for client := range l.cfg.Clients {
		wg.Go(func() {
			for i := range queue {
				if l.cfg.Batch > 0 {
					batch := l.Claims[i:min(i+l.cfg.Batch, len(l.Claims))]
					l.Sender.SendBatch(ctx, batch, client)
					l.finished.Add(int64(len(batch)))
					continue
				}
				l.run(ctx, i, client)
				l.finished.Add(1)
			}
		})
	}
	l.started = time.Now()
	go func() {
		defer cancel()
		defer close(l.done)
		step := max(1, l.cfg.Batch)
		next := l.started // when the next claim may start, with Rate
	feed:
		for i := 0; i < len(l.Claims); i += step {
			if l.cfg.Rate > 0 {
				sleep(ctx, time.Until(next))
			}
			select {
			case queue <- i:
			case <-ctx.Done():
				break feed
			}
			if l.cfg.Rate > 0 {
				if now := time.Now(); now.Sub(next) > 100*time.Millisecond { // stalled (the clients were busy): no catching up
					next = now
				}
				next = next.Add(time.Duration(float64(step) / l.cfg.Rate * float64(time.Second)))
			}
		}
		close(queue)
		wg.Wait()
		l.Elapsed = time.Since(l.started)
	}()
}

// run sends claim i according to its plan.
func (l *Load) run(ctx context.Context, i, client int) {
	c := l.Claims[i]
	plan := Plan{1}
	if l.cfg.Plan != nil {
		plan = l.cfg.Plan(i)
	}
	for _, copies := range plan {
		var wg sync.WaitGroup
		for n := range copies {
			wg.Go(func() { l.Sender.Send(ctx, c, client+n) })
		}
		wg.Wait()
	}
}

// WaitFinished waits until n claims are finished, or the load is over.
func (l *Load) WaitFinished(n int) {
	for l.finished.Load() < int64(n) {
		select {
		case <-l.done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Done reports whether the load is over: every client has stopped.
func (l *Load) Done() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// WaitFraction waits until that share of the claims is finished.
func (l *Load) WaitFraction(f float64) { l.WaitFinished(int(f * float64(len(l.Claims)))) }

// Wait waits for the load to end and requires that it sent every claim.
func (l *Load) Wait() {
	l.t.Helper()
	select {
	case <-l.done:
	case <-time.After(l.cfg.Timeout + 30*time.Second):
		l.t.Fatalf("load did not stop within %s", l.cfg.Timeout+30*time.Second)
	}
	require.EqualValues(l.t, len(l.Claims), l.finished.Load(),
		"the load ran out of time (%s) before sending every claim", l.cfg.Timeout)
}

// Count returns how many claims have each outcome.
func (l *Load) Count() map[loadkit.Outcome]int {
	out := map[loadkit.Outcome]int{}
	for _, c := range l.Claims {
		out[c.Outcome()]++
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
