// Package httpapi is the HTTP layer: routes, request decoding, JSON and
// problem+json responses, rate limiting and per-route metrics. It turns
// requests into calls on the claim pipeline and the ranking, nothing more.
package httpapi

import (
	"context"
	"iter"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/claim-process/claim-process/internal/claim"
)

// ClaimSubmitter runs decoded claims through the pipeline.
type ClaimSubmitter interface {
	// Prepare validates a claim and gives it an id, without storing it.
	Prepare(req claim.Submission) (claim.Claim, error)
	// AdmitKey takes one idempotency key of the client's allowance for a
	// claim queued with one (async mode); claim.ErrTooManyKeys past it.
	AdmitKey(ctx context.Context, client string) error
	Submit(ctx context.Context, req claim.Submission) (claim.Result, error)
	SubmitBatch(ctx context.Context, client string, inputs iter.Seq2[claim.Input, error], report func(int, claim.Result, error))
	// Reverse reverses the client's claim ref (its id or claim_id) and
	// returns it as it stands; claim.ErrNotFound when the client has none.
	Reverse(ctx context.Context, client, ref, reason, detail string) (claim.Claim, error)
}

// ClaimStatusReader tells one client what became of a claim it sent: stored
// (with the claim), queued or dead-lettered; claim.ErrNotFound when it was
// never accepted, or is another client's.
type ClaimStatusReader interface {
	ClaimStatus(ctx context.Context, client, id string) (claim.Status, error)
}

// ClaimQueue takes prepared claims for asynchronous storage.
type ClaimQueue interface {
	// Enqueue returns once the broker has the claim durably; an error means
	// it was not accepted.
	Enqueue(ctx context.Context, c claim.Claim, idempotencyKey string) error
	// Ready tells whether claims can be enqueued now.
	Ready(ctx context.Context) error
}

// Ranking answers a page of a board (limit providers from the offset-th,
// from 0), or one provider's standing in it (claim.ErrNotFound when it has
// none), and says where the answer came from.
type Ranking interface {
	BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, claim.Source, error)
	BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, claim.Source, error)
}

// Deps is everything the HTTP layer needs.
type Deps struct {
	Claims ClaimSubmitter
	// Statuses answers GET /claims/{id}.
	Statuses ClaimStatusReader
	// Queue, when set (INGEST_MODE=async), takes POST /claims: the claim is
	// validated, published, and answered 202 once the broker confirmed it.
	Queue ClaimQueue
	// Finder answers GET /claims.
	Finder ClaimFinder
	Top    Ranking
	// BatchTimeout bounds a POST /claims/batch request, reading its body and
	// storing its claims. Default 2 minutes.
	BatchTimeout time.Duration
	// MaxBatchBytes bounds a POST /claims/batch body. Default 64 MiB.
	MaxBatchBytes int64
	// RateLimiter guards /top-providers; nil means no limit.
	RateLimiter *RateLimiter
	// APIKeys, when it holds any, are required to post and read claims.
	APIKeys *APIKeys
	// AllowAnonymousReads lets GET /claims/{id} answer without API keys
	// configured (for local use: anyone who can reach the port reads every
	// claim sent without a key). Without it, and without keys, claim reads
	// are refused.
	AllowAnonymousReads bool
	// PingPostgres and PingRedis back /readyz.
	PingPostgres func(context.Context) error
	PingRedis    func(context.Context) error
	// Registry receives the HTTP metrics, and is served at /metrics unless
	// MetricsElsewhere (METRICS_ADDR: the operator serves it on an address
	// of its own).
	Registry         *prometheus.Registry
	MetricsElsewhere bool
	Log              *slog.Logger
	// LookupLogSample logs one in this many successful /top-providers
	// lookups (ACCESS_LOG_LOOKUP_SAMPLE); every other request, and every
	// failed lookup, is always logged. 1 logs every lookup. Default
	// DefaultLookupLogSample.
	LookupLogSample int
}

// DefaultLookupLogSample is Deps.LookupLogSample's default: at tens of
// thousands of lookups a second, one line in a hundred still shows the
// traffic, and its count and latency are in the metrics whole.
const DefaultLookupLogSample = 100

// NewServer returns the service's HTTP handler.
func NewServer(d Deps) http.Handler {
	if d.BatchTimeout <= 0 {
		d.BatchTimeout = defaultBatchTimeout
	}
	if d.MaxBatchBytes <= 0 {
		d.MaxBatchBytes = defaultMaxBatchBytes
	}
	return routes(d, newMetrics(d.Registry))
}
