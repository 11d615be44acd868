// Package ingest is the claim pipeline: a decoded claim is parsed and
// validated, given an id, stored in Postgres with its provider totals, and
// its providers' new totals are pushed to the Redis ranking.
package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/claim-process/claim-process/internal/claim"
)

// ClaimStore stores claims durably, whole or not at all, and keeps the
// idempotency keys that make retries safe.
type ClaimStore interface {
	InsertClaims(ctx context.Context, batch []claim.Pending) (claim.StoredBatch, error)
	AcquireKey(ctx context.Context, r claim.KeyRequest) (*claim.KeyLease, *claim.KeyOutcome, error)
	ReleaseKey(ctx context.Context, lease *claim.KeyLease) error
	// CountKeys says how many idempotency keys a client scope holds,
	// counting no further than upTo; ExpireKeys forgets expired ones.
	CountKeys(ctx context.Context, scope string, upTo int64) (int64, error)
	ExpireKeys(ctx context.Context) (int64, error)
	// Claim reads a claim of the client scope; claim.ErrNotFound for an id
	// never stored or another client's.
	Claim(ctx context.Context, scope, id string) (claim.Claim, error)
	// ReverseClaim reverses a claim of the client scope, named by its id or
	// its external id, and returns it as it stands and the totals it changed
	// (none when it was reversed already); claim.ErrNotFound when there is
	// no such claim of the client.
	ReverseClaim(ctx context.Context, scope, ref, reason, detail string) (claim.Claim, []claim.ProviderTotal, error)
}

// Ranking receives committed provider totals. Writes must be safe to repeat
// and to reorder.
type Ranking interface {
	Apply(ctx context.Context, totals []claim.ProviderTotal) (int, error)
}

// Config tunes the pipeline. Zero values take the defaults.
type Config struct {
	// Rules every claim must pass. Default claim.DefaultRules().
	Rules claim.Rules
	// RankingTimeout bounds each Redis write after a commit. Default 250ms.
	RankingTimeout time.Duration
	// KeyTTL is how long an idempotency key is remembered. Default DefaultKeyTTL.
	KeyTTL time.Duration
	// KeyLease is how long a request holds its key before a retry may take
	// it over (the holder having died). Default 15s, above any request's deadline.
	KeyLease time.Duration
	// KeysPerClient caps the idempotency keys one client holds at once (they
	// are forgotten after KeyTTL); past it a claim with a new key is refused
	// with claim.ErrTooManyKeys. Default DefaultKeysPerClient.
	KeysPerClient int64

	// Group commit: claims of concurrent requests are stored together, one
	// transaction per batch. A batch is flushed when it holds BatchSize
	// claims (default DefaultBatchSize) or BatchLines lines (default 4096),
	// or BatchWait (default DefaultBatchWait) after its first claim arrived,
	// whichever comes first.
	BatchSize  int
	BatchLines int
	BatchWait  time.Duration
	// Writers is how many batches may be in flight at once. Default
	// DefaultWriters.
	Writers int
	// Backlog bounds the claims waiting for a batch (INGEST_QUEUE_SIZE);
	// beyond it a request is answered 503 with Retry-After. Default
	// DefaultBacklog.
	Backlog int
	// FlushTimeout bounds the transaction of one batch. Default 5s.
	FlushTimeout time.Duration
}

// The defaults of the Config settings an operator tunes. DefaultKeysPerClient
// is met by a client sustaining about 115 claims a second with a new key
// each for a whole DefaultKeyTTL.
const (
	DefaultKeyTTL        = 24 * time.Hour
	DefaultKeysPerClient = 10_000_000
	DefaultBatchSize     = 256
	DefaultBatchWait     = 2 * time.Millisecond
	DefaultWriters       = 2
	DefaultBacklog       = 8192
)

// Service runs claims through the pipeline.
type Service struct {
	store   ClaimStore
	cfg     Config
	metrics *metrics
	log     *slog.Logger
	batcher *batcher
	keys    *keyCap
}

// New returns the pipeline writing to store and ranking. Its metrics are
// registered with reg.
func New(store ClaimStore, ranking Ranking, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Rules == nil {
		cfg.Rules = claim.DefaultRules()
	}
	if cfg.RankingTimeout <= 0 {
		cfg.RankingTimeout = 250 * time.Millisecond
	}
	if cfg.KeyTTL <= 0 {
		cfg.KeyTTL = DefaultKeyTTL
	}
	if cfg.KeyLease <= 0 {
		cfg.KeyLease = 15 * time.Second
	}
	if cfg.KeysPerClient <= 0 {
		cfg.KeysPerClient = DefaultKeysPerClient
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.BatchLines <= 0 {
		cfg.BatchLines = 4096
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = DefaultBatchWait
	}
	if cfg.Writers <= 0 {
		cfg.Writers = DefaultWriters
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultBacklog
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 5 * time.Second
	}
	m := newMetrics(reg)
	return &Service{store: store, cfg: cfg, metrics: m, log: log,
		batcher: newBatcher(store, ranking, cfg, m, log),
		keys:    newKeyCap(store, cfg.KeysPerClient)}
}

// Reverse reverses the client's claim ref (its id or its claim_id): stored
// reversed in Postgres with its event, then its providers' new totals in
// Redis. Reversing it again changes nothing and answers the same.
func (s *Service) Reverse(ctx context.Context, client, ref, reason, detail string) (claim.Claim, error) {
	c, totals, err := s.store.ReverseClaim(ctx, client, ref, reason, detail)
	if err != nil {
		return claim.Claim{}, err
	}
	s.batcher.rank(totals)
	if len(totals) > 0 {
		s.metrics.reversals.Inc()
	}
	return c, nil
}

// Close stops taking claims, and returns once every claim already taken is
// stored (or refused) and its request answered.
func (s *Service) Close() { s.batcher.close() }

// Submit validates a claim and stores it whole, exactly once. It fails with
// claim.Problems when the claim is invalid; then nothing was stored. A claim
// whose external id is stored already, or a retry with the same idempotency
// key, returns the stored claim and changes nothing. Once the claim is
// committed Submit succeeds, even if Redis could not be updated: Postgres is
// the truth, and reconciliation repairs Redis. When too many claims are
// waiting to be stored it fails at once with claim.ErrBusy.
func (s *Service) Submit(ctx context.Context, req claim.Submission) (res claim.Result, err error) {
	mode := "sync"
	if req.ID != "" {
		mode = "async" // a claim from RabbitMQ
	}
	defer func() { s.countOutcome(mode, res, err) }()
	return s.submit(ctx, req, mode)
}

// outcomeOf names what became of one submission, for the metrics.
func outcomeOf(res claim.Result, err error) string {
	var problems claim.Problems
	switch {
	case err == nil && res.Created && !res.Replayed:
		return "stored"
	case err == nil:
		return "duplicate"
	case errors.As(err, &problems), errors.Is(err, claim.ErrMalformed):
		return "invalid"
	case errors.Is(err, claim.ErrClaimIDReused), errors.Is(err, claim.ErrKeyReused):
		return "conflict"
	case errors.Is(err, claim.ErrKeyInFlight):
		return "in_flight"
	case errors.Is(err, claim.ErrTooManyKeys), errors.Is(err, claim.ErrTooManyQueued):
		return "limited"
	case errors.Is(err, claim.ErrBusy), errors.Is(err, claim.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "unavailable"
	default:
		return "failed"
	}
}

func (s *Service) countOutcome(mode string, res claim.Result, err error) {
	s.metrics.outcomes.WithLabelValues(mode, outcomeOf(res, err)).Inc()
}

func (s *Service) submit(ctx context.Context, req claim.Submission, mode string) (claim.Result, error) {
	c, err := s.Prepare(req)
	if err != nil {
		return claim.Result{}, err
	}
	var lease *claim.KeyLease
	if req.IdempotencyKey != "" {
		var earlier *claim.KeyOutcome
		kr := claim.KeyRequest{
			Scope: req.Client, Key: req.IdempotencyKey, RequestHash: c.Fingerprint(),
			Lease: s.cfg.KeyLease, TTL: s.cfg.KeyTTL,
		}
		if req.ID != "" {
			// A queued claim delivered again (its worker died holding the
			// key) takes its own lease over at once.
			kr.Token, _ = uuid.Parse(req.ID)
		} else if _, err := s.keys.count(ctx, req.Client); err != nil {
			return claim.Result{}, err
		}
		lease, earlier, err = s.store.AcquireKey(ctx, kr)
		if err != nil {
			return claim.Result{}, err
		}
		if earlier != nil {
			s.metrics.duplicates.WithLabelValues("idempotency_key").Inc()
			stored, err := s.store.Claim(ctx, req.Client, earlier.ClaimID)
			return claim.Result{Claim: stored, Created: earlier.Created, Replayed: true}, err
		}
		if req.ID == "" { // a queued claim was admitted when it was accepted
			if err := s.keys.admit(ctx, req.Client); err != nil {
				s.releaseKey(ctx, lease)
				return claim.Result{}, err
			}
		}
	}

	q := &waiting{ctx: ctx, mode: mode, item: claim.Pending{Claim: c, Lease: lease}, done: make(chan outcome, 1)}
	err = s.batcher.add(ctx, q)
	var out outcome
	if err == nil {
		out = q.wait(ctx)
		err = cmp.Or(out.err, out.stored.Err)
	}
	if err != nil {
		if lease != nil {
			s.releaseKey(ctx, lease)
		}
		return claim.Result{}, err
	}
	if id := out.stored.ExistingID; id != "" {
		by := "claim_id"
		if id == c.ID {
			by = "redelivery" // a queued claim stored on an earlier delivery
		}
		s.metrics.duplicates.WithLabelValues(by).Inc()
		stored, err := s.store.Claim(ctx, req.Client, id)
		return claim.Result{Claim: stored}, err
	}
	c.Replaces = out.stored.Replaced
	return claim.Result{Claim: c, Created: true}, nil
}

// releaseKey gives up a lease whose claim was not stored, so a retry can go
// on at once.
func (s *Service) releaseKey(ctx context.Context, lease *claim.KeyLease) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.store.ReleaseKey(rctx, lease); err != nil {
		s.log.Warn("idempotency key not released; it frees itself when its lease ends", "err", err)
	}
}

// AdmitKey takes one idempotency key of the client's allowance for a claim
// that will be stored elsewhere (queued, in async mode): it fails with
// claim.ErrTooManyKeys when the client holds Config.KeysPerClient keys.
func (s *Service) AdmitKey(ctx context.Context, client string) error {
	return s.keys.admit(ctx, client)
}

// Prepare parses and validates a claim and gives it an id (req.ID when set):
// everything Submit does before storing. It fails with claim.Problems when
// the claim is invalid.
func (s *Service) Prepare(req claim.Submission) (claim.Claim, error) {
	lines, err := claim.Parse(req.Input, s.cfg.Rules)
	if err != nil {
		var problems claim.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				s.metrics.validationFailures.WithLabelValues(p.Rule).Inc()
			}
		}
		return claim.Claim{}, err
	}
	if req.ID != "" {
		return claim.Claim{ID: req.ID, Sender: req.Client, ExternalID: req.Input.ExternalIDText(), Replaces: req.Input.ReplacesText(),
			ReceivedAt: req.ReceivedAt.UTC().Truncate(time.Microsecond), Lines: lines}, nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return claim.Claim{}, fmt.Errorf("claim id: %w", err)
	}
	// Postgres keeps microseconds; the answer shows what is stored.
	return claim.Claim{ID: id.String(), Sender: req.Client, ExternalID: req.Input.ExternalIDText(), Replaces: req.Input.ReplacesText(),
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), Lines: lines}, nil
}

// batchWindow is how many claims of one batch request may wait to be stored
// at once; the request reads no further input until the oldest is done.
const batchWindow = 1024

// SubmitBatch stores the claims of one client as inputs yields them, each on
// its own: a refused claim does not stop the others. An input that comes
// with an error (it could not be decoded) is reported with that error. report is called once
// per claim with its position (from 0) and outcome: a Result whose Claim
// carries the stored claim's id (for a claim stored before under the same
// claim_id, that claim's id, with Created false and no received_at), or the
// error Submit would return. Reports come in no particular order; all have
// been made when SubmitBatch returns. Unlike Submit, a full backlog makes
// SubmitBatch wait: the batch's sender is slowed down, not refused.
func (s *Service) SubmitBatch(ctx context.Context, client string, inputs iter.Seq2[claim.Input, error], report func(int, claim.Result, error)) {
	given := report
	report = func(i int, res claim.Result, err error) {
		s.countOutcome("batch", res, err)
		given(i, res, err)
	}
	type inFlight struct {
		index int
		claim claim.Claim
		q     *waiting
	}
	var (
		window []inFlight
		// The claim_ids in the window: a claim_id seen again waits for its
		// first claim to be stored, so the first position wins, as if the
		// claims were sent one after the other.
		inWindow = map[string]bool{}
	)
	collect := func() {
		f := window[0]
		window = window[1:]
		delete(inWindow, f.claim.ExternalID)
		out := f.q.wait(ctx)
		switch err := cmp.Or(out.err, out.stored.Err); {
		case err != nil:
			report(f.index, claim.Result{}, err)
		case out.stored.ExistingID != "":
			s.metrics.duplicates.WithLabelValues("claim_id").Inc()
			f.claim.ID, f.claim.ReceivedAt = out.stored.ExistingID, time.Time{}
			report(f.index, claim.Result{Claim: f.claim}, nil)
		default:
			report(f.index, claim.Result{Claim: f.claim, Created: true}, nil)
		}
	}
	i := 0
	for in, err := range inputs {
		index := i
		i++
		if err != nil { // the input could not be read as a claim
			report(index, claim.Result{}, err)
			continue
		}
		c, err := s.Prepare(claim.Submission{Input: in, Client: client})
		if err != nil {
			report(index, claim.Result{}, err)
			continue
		}
		for len(window) == batchWindow || (c.ExternalID != "" && inWindow[c.ExternalID]) {
			collect()
		}
		// Batches fill at most half the backlog, so that single claims find
		// room while batches stream in.
		q := &waiting{ctx: ctx, mode: "batch", batch: true, item: claim.Pending{Claim: c}, done: make(chan outcome, 1)}
		if err := s.batcher.add(ctx, q); err != nil {
			report(index, claim.Result{}, err)
			continue
		}
		window = append(window, inFlight{index: index, claim: c, q: q})
		if c.ExternalID != "" {
			inWindow[c.ExternalID] = true
		}
	}
	for len(window) > 0 {
		collect()
	}
}

type metrics struct {
	claims             *prometheus.CounterVec
	lines              *prometheus.CounterVec
	outcomes           *prometheus.CounterVec
	money              moneyCounters
	duplicates         *prometheus.CounterVec
	validationFailures *prometheus.CounterVec
	rankingFailures    prometheus.Counter
	reversals          prometheus.Counter
	rankingRetries     prometheus.Counter
	batchClaims        prometheus.Histogram
	flushDuration      prometheus.Histogram
	batchFallbacks     prometheus.Counter
	queueRejections    prometheus.Counter
	queueDepth         func(func() float64)
}

// moneyCounters add up the money in stored claims, by component. Every
// component is non-negative, so each is a counter; the net fee can be
// negative and is their sum (provider fees + coinsurance + copay - allowed),
// which a query can compute.
type moneyCounters struct {
	providerFees, allowedFees, coinsurance, copay prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	const ns = "claimd"
	money := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "ingested_money_cents_total",
		Help: "Money in the claims stored, in cents, by component (provider_fees, allowed_fees, member_coinsurance, member_copay); the net fee is provider_fees + member_coinsurance + member_copay - allowed_fees.",
	}, []string{"component"})
	m := &metrics{
		money: moneyCounters{
			providerFees: money.WithLabelValues("provider_fees"),
			allowedFees:  money.WithLabelValues("allowed_fees"),
			coinsurance:  money.WithLabelValues("member_coinsurance"),
			copay:        money.WithLabelValues("member_copay"),
		},
		claims: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "claims_ingested_total",
			Help: "Claims stored in Postgres, by how they came (mode: sync for POST /claims, batch for POST /claims/batch, async for the queue's workers).",
		}, []string{"mode"}),
		lines: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "claim_lines_ingested_total",
			Help: "Claim lines stored in Postgres, by how their claims came (mode: sync, batch, async).",
		}, []string{"mode"}),
		outcomes: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "claim_submissions_total",
			Help: "Claims submitted to be stored, by mode (sync, batch, async) and outcome: stored, duplicate (stored before: claim_id, idempotency key or redelivery), invalid, conflict (claim_id or key reused for another claim), in_flight (same key in progress), limited (the client is at a cap: idempotency keys or queued claims), unavailable (busy or storage down; retry), failed.",
		}, []string{"mode", "outcome"}),
		duplicates: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "claims_deduplicated_total",
			Help: "Submissions answered with an already stored claim instead of storing it again, by what matched (idempotency_key, claim_id, or redelivery: a queued claim delivered again).",
		}, []string{"by"}),
		rankingRetries: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "redis_update_retries_total",
			Help: "Redis ranking writes retried after a failure.",
		}),
		validationFailures: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "validation_failures_total",
			Help: "Problems found in refused claims, by the rule that failed.",
		}, []string{"rule"}),
		reversals: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "claims_reversed_total",
			Help: "Claims reversed (voided, or replaced by a correction): their net fees left the totals.",
		}),
		rankingFailures: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "redis_update_failures_total",
			Help: "Committed batches of claims whose provider totals could not be written to Redis; reconciliation repairs them.",
		}),
		batchClaims: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "ingest_batch_claims",
			Help:    "Claims stored per group-commit batch (one transaction each).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}),
		flushDuration: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "ingest_batch_duration_seconds",
			Help:    "Time to store one group-commit batch in Postgres, commit included.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}),
		batchFallbacks: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "ingest_batch_fallbacks_total",
			Help: "Batches Postgres refused as a whole, whose claims were then stored one by one.",
		}),
		queueRejections: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "ingest_queue_rejections_total",
			Help: "Claims refused with 503 because the group-commit queue was full.",
		}),
		queueDepth: func(depth func() float64) {
			f.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: ns, Name: "ingest_queue_claims",
				Help: "Claims waiting in the group-commit queue.",
			}, depth)
		},
	}
	for _, by := range []string{"idempotency_key", "claim_id", "redelivery"} {
		m.duplicates.WithLabelValues(by) // exported at 0 from the start
	}
	return m
}

// KeyJanitor keeps the idempotency keys: it deletes expired ones and counts
// again the keys of each client the service has seen.
type KeyJanitor struct {
	s        *Service
	interval time.Duration
}

// KeyJanitor returns the service's key janitor, to run every interval.
func (s *Service) KeyJanitor(interval time.Duration) *KeyJanitor {
	return &KeyJanitor{s: s, interval: interval}
}

// Run makes a pass now and then every interval, until ctx is done.
func (j *KeyJanitor) Run(ctx context.Context) {
	ticker := time.NewTicker(j.interval)
	defer ticker.Stop()
	for {
		n, err := j.RunOnce(ctx)
		if n > 0 {
			j.s.log.Info("expired idempotency keys", "count", n)
		}
		if err != nil && ctx.Err() == nil {
			j.s.log.Warn("maintaining idempotency keys failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RunOnce deletes the expired keys, then counts each client's keys again,
// the one whether or not the other failed. It returns how many keys expired.
func (j *KeyJanitor) RunOnce(ctx context.Context) (expired int64, err error) {
	expired, expireErr := j.s.store.ExpireKeys(ctx)
	if expireErr != nil {
		expireErr = fmt.Errorf("expiring keys: %w", expireErr)
	}
	countErr := j.s.keys.recount(ctx)
	if countErr != nil {
		countErr = fmt.Errorf("counting keys: %w", countErr)
	}
	return expired, errors.Join(expireErr, countErr)
}
