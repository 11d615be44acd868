package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// Operation names, as reported.
const (
	opPostClaim    = "post_claim"
	opPostBatch    = "post_batch"
	opTopProviders = "top_providers"
	opProviderRank = "provider_rank"
)

// sentClaim is a claim and what the service answered about it.
type sentClaim struct {
	Claim   *loadkit.Claim
	Outcome loadkit.Outcome
	Status  int    // the last HTTP status, 0 for no answer
	ID      string // the service's id, from a 2xx answer
	Problem string // the 2xx answer disagreed with what was sent
	// Accepted: the answer was 202, the claim is queued (claimd's async
	// mode) and a worker stores it later, so verification first waits for it.
	Accepted bool
	// Resent: the outcome was unknown after the load and the claim was sent
	// again (resolve). In async mode both sends may have been queued, and the
	// claim is then stored under the id of whichever a worker stored first.
	Resent bool
}

// opStats collects one operation's answers. Latencies are all kept (8 bytes
// each) so percentiles are exact rather than bucketed.
type opStats struct {
	latencies []time.Duration
	statuses  map[int]int64    // HTTP status -> count
	errors    map[string]int64 // transport error class -> count
}

// recorder is shared by every request of a run.
type recorder struct {
	mu      sync.Mutex
	ops     map[string]*opStats
	claims  []*sentClaim
	batch   batchStats       // batch mode: what the items' answers said
	sources map[string]int64 // /top-providers answers by "source"
	stored  storedStats      // -stored-sample: 202 to stored, of the claims followed

	// For the progress line, read without the lock.
	done, ok, failed, limited atomic.Int64
}

func newRecorder() *recorder { return &recorder{ops: map[string]*opStats{}} }

func (r *recorder) record(op string, latency time.Duration, status int, errClass string, sc *sentClaim) {
	r.done.Add(1)
	switch {
	case status >= 200 && status < 300:
		r.ok.Add(1)
	case status == http.StatusTooManyRequests:
		r.limited.Add(1)
	default:
		r.failed.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.ops[op]
	if s == nil {
		s = &opStats{statuses: map[int]int64{}, errors: map[string]int64{}}
		r.ops[op] = s
	}
	s.latencies = append(s.latencies, latency)
	if errClass != "" {
		s.errors[errClass]++
	} else {
		s.statuses[status]++
	}
	if sc != nil {
		r.claims = append(r.claims, sc)
	}
}

// source counts a /top-providers answer by where it came from.
func (r *recorder) source(src string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sources == nil {
		r.sources = map[string]int64{}
	}
	r.sources[src]++
}

// answerSource finds "source" in a /top-providers answer without decoding
// the whole of it: the lookups are the load, and stay cheap.
func answerSource(body []byte) string {
	for _, src := range []string{"redis", "postgres"} {
		if bytes.Contains(body, []byte(`"source":"`+src+`"`)) {
			return src
		}
	}
	return "unknown"
}

// recordBatch records one batch request and the claims it carried.
func (r *recorder) recordBatch(latency time.Duration, status int, errClass string, scs []*sentClaim, items batchStats) {
	r.record(opPostBatch, latency, status, errClass, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claims = append(r.claims, scs...)
	r.batch.add(items)
}

// loadResult is what the load phase produced.
type loadResult struct {
	Started    time.Time
	Elapsed    time.Duration // first request sent to last answer received
	Ops        map[string]*opStats
	Claims     []*sentClaim     // every claim sent, in answer order
	Resolved   int              // claims resent after the load to learn their outcome
	Canceled   bool             // the load was interrupted
	Batch      batchStats       // batch mode: the items' answers during the load
	TopSources map[string]int64 // /top-providers answers by "source"
	Stored     storedStats      // -stored-sample: 202 to stored, of the claims followed
}

func (r *loadResult) total() int64 {
	var n int64
	for _, s := range r.Ops {
		n += int64(len(s.latencies))
	}
	return n
}

// acceptedClaims counts the claims answered 202: queued, to be stored by a worker.
func (r *loadResult) acceptedClaims() int64 {
	var n int64
	for _, sc := range r.Claims {
		if sc.Outcome == loadkit.Acked && sc.Accepted {
			n++
		}
	}
	return n
}

// ackedClaims and ackedLines count what the service acknowledged.
func (r *loadResult) ackedClaims() (claims, lines int64) {
	for _, sc := range r.Claims {
		if sc.Outcome == loadkit.Acked {
			claims++
			lines += int64(len(sc.Claim.Lines))
		}
	}
	return claims, lines
}

func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "cb-" + hex.EncodeToString(b[:])
}

func newHTTPClient(cfg config) *http.Client {
	conns := cfg.Concurrency
	if cfg.Rate > 0 {
		conns = cfg.MaxInFlight
	}
	return &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // a benchmark of 127.0.0.1 must never go through a proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns + 16,
			MaxIdleConnsPerHost: conns + 16, // the default of 2 would open and close a connection per request
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// loader sends the requests of one run.
type loader struct {
	cfg    config
	client *http.Client
	npis   []string // the provider pool every generator draws from
	rec    *recorder
	seq    atomic.Int64 // claim_id sequence
	issued atomic.Int64 // requests started, against -requests

	accepted atomic.Int64   // 202 answers, for -stored-sample
	trackers sync.WaitGroup // the claims followed until stored
	settling atomic.Bool    // the load is over: resends are not followed
}

// runLoad runs the load phase to its end (duration, request count or ctx)
// and then resolves every claim whose outcome is unknown.
func runLoad(ctx context.Context, cfg config, client *http.Client, stderr io.Writer) *loadResult {
	l := &loader{cfg: cfg, client: client, npis: loadkit.NPIPool(cfg.NPIs), rec: newRecorder()}
	// The issuing stops at the deadline; requests in flight run on to their
	// answer so the last second is not counted as errors.
	issueCtx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Requests == 0 {
		issueCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
	}
	defer cancel()

	// An interrupt stops the issuing only: requests in flight are answered
	// (within -timeout), so their outcome is known and the figures are whole.
	reqCtx := context.WithoutCancel(ctx)
	started := time.Now()
	stopProgress := l.startProgress(stderr, started)
	if cfg.Rate > 0 {
		l.openLoop(issueCtx, reqCtx)
	} else {
		l.closedLoop(issueCtx, reqCtx)
	}
	elapsed := time.Since(started)
	stopProgress()
	l.settling.Store(true)

	l.rec.mu.Lock()
	res := &loadResult{Started: started, Elapsed: elapsed, Ops: l.rec.ops, Claims: l.rec.claims,
		Canceled: ctx.Err() != nil, Batch: l.rec.batch, TopSources: l.rec.sources}
	l.rec.mu.Unlock()
	if cfg.Mode == "batch" {
		var protocol []string
		res.Resolved, protocol = l.resolveBatch(context.WithoutCancel(ctx), res.Claims)
		for _, p := range protocol {
			res.Batch.problem("%s", p)
		}
	} else {
		res.Resolved = l.resolve(context.WithoutCancel(ctx), res.Claims)
	}
	l.trackers.Wait() // each follows its claim until stored, or -drain-wait
	l.rec.mu.Lock()
	res.Stored = l.rec.stored
	l.rec.mu.Unlock()
	return res
}

// take reserves the next request of a -requests run; false when all are sent.
func (l *loader) take() bool {
	return l.cfg.Requests == 0 || l.issued.Add(1) <= l.cfg.Requests
}

// closedLoop runs -concurrency clients, each sending its next request as soon
// as the last one is answered.
func (l *loader) closedLoop(issueCtx, reqCtx context.Context) {
	var wg sync.WaitGroup
	for w := range l.cfg.Concurrency {
		gen := l.generator(int64(w))
		wg.Go(func() {
			for issueCtx.Err() == nil && l.take() {
				l.one(reqCtx, gen, time.Now())
			}
		})
	}
	wg.Wait()
}

// generator returns the generator of one stream of requests; streams of one
// seed differ from each other and are the same in every run.
func (l *loader) generator(stream int64) *loadkit.Generator {
	g := loadkit.NewGenerator(l.cfg.Seed*1_000_003+stream, l.npis, l.cfg.ZipfS, l.cfg.MaxLines)
	g.FixLines(l.cfg.Lines)
	return g
}

// openLoop starts requests on a fixed schedule whatever the service's
// latency, as independent clients would. Latency is measured from each
// request's scheduled start, so when the service (or this client) falls
// behind, the waiting shows in the percentiles instead of being hidden
// (coordinated omission).
func (l *loader) openLoop(issueCtx, reqCtx context.Context) {
	gen := l.generator(0) // one goroutine draws everything: reproducible for a seed
	slots := make(chan struct{}, l.cfg.MaxInFlight)
	interval := time.Duration(float64(time.Second) / l.cfg.Rate)
	var wg sync.WaitGroup
	start := time.Now()
	for i := int64(0); ; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		if d := time.Until(scheduled); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-issueCtx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if issueCtx.Err() != nil || !l.take() {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-issueCtx.Done():
		}
		if issueCtx.Err() != nil {
			break
		}
		req := l.prepare(gen)
		wg.Go(func() {
			defer func() { <-slots }()
			req.send(reqCtx, l, scheduled)
		})
	}
	wg.Wait()
}

// prepared is one request, generated before it is sent so that in the open
// loop all randomness comes from one goroutine.
type prepared struct {
	op     string
	npi    string // opProviderRank
	claim  *loadkit.Claim
	claims []*loadkit.Claim // opPostBatch
}

func (l *loader) prepare(gen *loadkit.Generator) prepared {
	top := false
	switch l.cfg.Mode {
	case "top":
		top = true
	case "mix":
		top = gen.Float64() < l.cfg.MixTopRatio
	}
	if top {
		return prepared{op: opTopProviders}
	}
	if l.cfg.Mode == "rank" {
		return prepared{op: opProviderRank, npi: gen.NPI()}
	}
	if l.cfg.Mode == "batch" {
		claims := make([]*loadkit.Claim, l.cfg.BatchSize)
		last := l.seq.Add(int64(len(claims)))
		for i := range claims {
			claims[i] = gen.Claim(l.cfg.RunID + "-" + strconv.FormatInt(last-int64(len(claims)-1-i), 10))
		}
		return prepared{op: opPostBatch, claims: claims}
	}
	id := l.cfg.RunID + "-" + strconv.FormatInt(l.seq.Add(1), 10)
	return prepared{op: opPostClaim, claim: gen.Claim(id)}
}

func (l *loader) one(ctx context.Context, gen *loadkit.Generator, start time.Time) {
	l.prepare(gen).send(ctx, l, start)
}

func (p prepared) send(ctx context.Context, l *loader, start time.Time) {
	switch p.op {
	case opTopProviders, opProviderRank:
		// Both lookups name the board the same way, as a query.
		path, query := fmt.Sprintf("/top-providers?limit=%d", l.cfg.TopLimit), "&"
		if p.op == opProviderRank {
			path, query = "/providers/"+p.npi, "?"
		}
		if l.cfg.Board != "" {
			path += query + l.cfg.Board
		}
		status, body, err := l.do(ctx, http.MethodGet, path, nil)
		l.rec.record(p.op, time.Since(start), status, errClass(err), nil)
		if status == http.StatusOK {
			l.rec.source(answerSource(body))
		}
	case opPostClaim:
		sc := &sentClaim{Claim: p.claim}
		status, err := l.post(ctx, sc)
		l.rec.record(opPostClaim, time.Since(start), status, errClass(err), sc)
	case opPostBatch:
		scs := make([]*sentClaim, len(p.claims))
		for i, c := range p.claims {
			scs[i] = &sentClaim{Claim: c}
		}
		status, items, err := l.postBatch(ctx, scs)
		l.rec.recordBatch(time.Since(start), status, errClass(err), scs, items)
	}
}

// post sends one claim and records in sc what the answer means for it.
func (l *loader) post(ctx context.Context, sc *sentClaim) (int, error) {
	status, body, err := l.do(ctx, http.MethodPost, "/claims", sc.Claim.JSON())
	sc.Status = status // 0 for no answer
	sc.Outcome, sc.Accepted = loadkit.OutcomeOf(status), false
	switch {
	case sc.Outcome != loadkit.Acked:
	case status == http.StatusAccepted:
		// Async mode: accepted for the queue; stored later by a worker.
		acceptedAt := time.Now()
		sc.Accepted = true
		sc.ID, sc.Problem = checkQueuedAnswer(sc.Claim, body)
		if n := int64(l.cfg.StoredSample); n > 0 && sc.ID != "" && !l.settling.Load() && l.accepted.Add(1)%n == 0 {
			l.trackers.Go(func() { l.track(context.WithoutCancel(ctx), sc.ID, acceptedAt) })
		}
	default:
		sc.ID, sc.Problem = checkAnswer(sc.Claim, body)
	}
	return status, err
}

// queuedAnswer is claimd's 202 answer in async mode.
type queuedAnswer struct {
	ID      string      `json:"id"`
	ClaimID string      `json:"claim_id"`
	Status  string      `json:"status"`
	NetFee  json.Number `json:"net_fee"`
}

// checkQueuedAnswer reads the id from a 202 answer and says how it differs
// from what was sent ("" when it does not): the claim is not stored yet, so
// only its claim_id and net fee can be compared; its lines are checked once
// it is stored.
func checkQueuedAnswer(c *loadkit.Claim, body []byte) (id, problem string) {
	var a queuedAnswer
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return "", "202 answer is not a queued claim: " + err.Error()
	}
	switch {
	case a.ID == "":
		return "", "202 answer has no id"
	case a.ClaimID != c.ExternalID:
		return a.ID, fmt.Sprintf("202 answer: claim_id is %q, sent %q", a.ClaimID, c.ExternalID)
	case a.Status != "queued":
		return a.ID, fmt.Sprintf("202 answer: status is %q, expected queued", a.Status)
	}
	if got, err := loadkit.ParseCents(a.NetFee.String()); err != nil || got != c.NetFee() {
		return a.ID, fmt.Sprintf("202 answer: net_fee is %s, expected %s", a.NetFee, loadkit.FormatCents(c.NetFee()))
	}
	return a.ID, ""
}

// storedPoll is how often a followed claim is read back (-stored-sample).
const storedPoll = 5 * time.Millisecond

// storedStats are the claims followed from their 202 until stored.
type storedStats struct {
	latencies []time.Duration
	notStored int // still not stored after -drain-wait
}

// track follows one accepted claim: GET /claims/{id} every storedPoll until
// it answers the stored claim, and records the time from the 202 answer to
// that GET's answer (so the figure is late by up to one poll and one GET).
func (l *loader) track(ctx context.Context, id string, acceptedAt time.Time) {
	deadline := acceptedAt.Add(l.cfg.DrainWait)
	for time.Now().Before(deadline) {
		time.Sleep(storedPoll)
		status, body, err := l.do(ctx, http.MethodGet, "/claims/"+id, nil)
		if err == nil && status == http.StatusOK && bytes.Contains(body, []byte(`"status":"stored"`)) {
			d := time.Since(acceptedAt)
			l.rec.mu.Lock()
			l.rec.stored.latencies = append(l.rec.stored.latencies, d)
			l.rec.mu.Unlock()
			return
		}
	}
	l.rec.mu.Lock()
	l.rec.stored.notStored++
	l.rec.mu.Unlock()
}

// claimAnswer is the part of a stored claim that is checked.
type claimAnswer struct {
	ID      string      `json:"id"`
	ClaimID string      `json:"claim_id"`
	NetFee  json.Number `json:"net_fee"`
	Lines   []struct {
		loadkit.WireLine[json.Number]
		NetFee json.Number `json:"net_fee"`
	} `json:"lines"`
}

// checkAnswer reads the id from a 2xx answer and says how the stored claim
// it describes differs from what was sent ("" when it does not).
func checkAnswer(c *loadkit.Claim, body []byte) (id, problem string) {
	if id, ok := matchAnswer(c, body); ok {
		return id, ""
	}
	var a claimAnswer
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // money stays text until parseCents: no float rounding
	if err := dec.Decode(&a); err != nil {
		return "", "answer is not a claim: " + err.Error()
	}
	return a.ID, diffClaim(c, &a)
}

// diffClaim compares a stored claim, as the service describes it, with what
// was sent, and names the first difference.
func diffClaim(c *loadkit.Claim, a *claimAnswer) string {
	if a.ID == "" {
		return "answer has no id"
	}
	if a.ClaimID != c.ExternalID {
		return fmt.Sprintf("claim_id is %q, sent %q", a.ClaimID, c.ExternalID)
	}
	if len(a.Lines) != len(c.Lines) {
		return fmt.Sprintf("%d lines, sent %d", len(a.Lines), len(c.Lines))
	}
	if got, err := loadkit.ParseCents(a.NetFee.String()); err != nil || got != c.NetFee() {
		return fmt.Sprintf("net_fee is %s, expected %s", a.NetFee, loadkit.FormatCents(c.NetFee()))
	}
	for i, l := range c.Lines {
		g := a.Lines[i]
		q := ""
		if g.Quadrant != nil {
			q = *g.Quadrant
		}
		if g.ServiceDate != l.ServiceDate || g.SubmittedProcedure != l.Procedure || q != l.Quadrant ||
			g.PlanGroup != l.PlanGroup || g.Subscriber != l.Subscriber || g.ProviderNPI != l.NPI {
			return fmt.Sprintf("line %d: text fields differ: got %s/%s/%q/%s/%s/%s", i,
				g.ServiceDate, g.SubmittedProcedure, q, g.PlanGroup, g.Subscriber, g.ProviderNPI)
		}
		for _, m := range []struct {
			name string
			got  json.Number
			want int64
		}{
			{"provider_fees", g.ProviderFees, l.Fees}, {"allowed_fees", g.AllowedFees, l.Allowed},
			{"member_coinsurance", g.MemberCoinsurance, l.Coinsurance}, {"member_copay", g.MemberCopay, l.Copay},
			{"net_fee", g.NetFee, l.NetFee()},
		} {
			if got, err := loadkit.ParseCents(m.got.String()); err != nil || got != m.want {
				return fmt.Sprintf("line %d: %s is %s, sent %s", i, m.name, m.got, loadkit.FormatCents(m.want))
			}
		}
	}
	return ""
}

// do sends one request and reads the whole answer (so the connection is
// reused). A transport error gives status 0.
func (l *loader) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.cfg.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if l.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+l.cfg.APIKey)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// errClass names a transport error briefly, for counting.
func errClass(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	default:
		var op *net.OpError
		if errors.As(err, &op) {
			return "net: " + op.Op
		}
		return "other"
	}
}

// resolve resends every claim whose outcome is unknown, with the same
// claim_id: the service stores a claim_id once, so a resend answers 200 with
// the stored claim if the first attempt got through and stores it now if it
// did not. Either way the outcome becomes known and verification can be exact.
func (l *loader) resolve(ctx context.Context, claims []*sentClaim) int {
	var todo []*sentClaim
	for _, sc := range claims {
		if sc.Outcome == loadkit.Unknown {
			sc.Resent = true
			todo = append(todo, sc)
		}
	}
	if len(todo) == 0 {
		return 0
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, sc := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for attempt := range 6 {
				if attempt > 0 {
					time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
				}
				if _, err := l.post(ctx, sc); err == nil && sc.Outcome != loadkit.Unknown {
					return
				}
			}
		})
	}
	wg.Wait()
	return len(todo)
}

// startProgress prints elapsed, sent, ok, errors and the rate of the last
// tick to stderr until the returned stop is called. On a terminal it
// rewrites one line; otherwise it prints a line per tick.
func (l *loader) startProgress(stderr io.Writer, started time.Time) (stop func()) {
	if !l.cfg.Progress {
		return func() {}
	}
	eol, clear := "\n", ""
	if isTerminal(stderr) {
		eol, clear = "\r", "\x1b[K" // rewrite the line, erasing what a longer one left
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(l.cfg.progressTick)
		defer t.Stop()
		var last int64
		lastAt := started
		for {
			select {
			case <-done:
				if eol == "\r" {
					fmt.Fprintln(stderr)
				}
				return
			case now := <-t.C:
				n := l.rec.done.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				fmt.Fprintf(stderr, "%7.1fs  sent %d  ok %d  errors %d  429 %d  %.0f req/s%s%s",
					now.Sub(started).Seconds(), n, l.rec.ok.Load(), l.rec.failed.Load(), l.rec.limited.Load(), rate, clear, eol)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// isTerminal reports whether w is a terminal, where the progress line can
// rewrite itself instead of scrolling.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
