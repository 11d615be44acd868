package main

import (
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

func TestHistogramQuantileInterpolates(t *testing.T) {
	inf := math.Inf(1)
	before := histogram{bounds: []float64{0.01, 0.02, 0.05, inf}, counts: []float64{5, 5, 5, 5}}
	after := histogram{bounds: []float64{0.01, 0.02, 0.05, inf}, counts: []float64{5, 55, 105, 105}}
	h := after.since(before)
	assert.Equal(t, []float64{0, 50, 100, 100}, h.counts)
	assert.Equal(t, 100.0, h.count())
	// The 50th of 100 observations is the last of the (0.01, 0.02] bucket.
	assert.InDelta(t, 0.02, h.quantile(0.5), 1e-9)
	// The 75th is half way through the (0.02, 0.05] bucket.
	assert.InDelta(t, 0.035, h.quantile(0.75), 1e-9)
	// In the first bucket, from 0.
	first := histogram{bounds: []float64{0.01, inf}, counts: []float64{10, 10}}
	assert.InDelta(t, 0.005, first.quantile(0.5), 1e-9)
	// In the +Inf bucket: the largest finite bound.
	tail := histogram{bounds: []float64{0.01, inf}, counts: []float64{1, 10}}
	assert.Equal(t, 0.01, tail.quantile(0.99))
	assert.True(t, math.IsNaN(histogram{}.quantile(0.5)))

	q := h.quantiles()
	assert.InDelta(t, 20.0, q.P50, 1e-6)
	assert.Equal(t, "10, 20, 50 ms", q.Buckets)
}

func TestSumMetricAndReadHistogram(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`# HELP claimd_queue_acked_total Messages acknowledged.
# TYPE claimd_queue_acked_total counter
claimd_queue_acked_total 1234
# TYPE claimd_queue_end_to_end_seconds histogram
claimd_queue_end_to_end_seconds_bucket{le="0.005"} 1
claimd_queue_end_to_end_seconds_bucket{le="0.01"} 3
claimd_queue_end_to_end_seconds_bucket{le="+Inf"} 4
claimd_queue_end_to_end_seconds_sum 0.5
claimd_queue_end_to_end_seconds_count 4
`))
	}))
	defer srv.Close()
	ctx := t.Context()
	procs := []*claimdProc{{url: srv.URL}, {url: srv.URL}} // two workers: summed
	n, err := sumMetric(ctx, procs, "claimd_queue_acked_total")
	require.NoError(t, err)
	assert.Equal(t, 2468.0, n)
	h, err := readHistogram(ctx, procs, endToEndMetric)
	require.NoError(t, err)
	assert.Equal(t, []float64{0.005, 0.01, math.Inf(1)}, h.bounds)
	assert.Equal(t, []float64{2, 6, 8}, h.counts)
	_, err = readHistogram(ctx, procs, "no_such_histogram")
	assert.Error(t, err)
}

func TestCheckQueuedAnswer(t *testing.T) {
	c := &loadkit.Claim{ExternalID: "cb-x-1", Lines: []loadkit.Line{{Fees: 10000, Allowed: 8000, Coinsurance: 1000, Copay: 500}}}
	net := loadkit.FormatCents(c.NetFee())
	id, problem := checkQueuedAnswer(c, []byte(`{"id":"0190","claim_id":"cb-x-1","status":"queued","net_fee":`+net+`,"received_at":"2026-01-01T00:00:00Z"}`))
	assert.Equal(t, "0190", id)
	assert.Empty(t, problem)
	_, problem = checkQueuedAnswer(c, []byte(`{"id":"0190","claim_id":"cb-x-2","status":"queued","net_fee":`+net+`}`))
	assert.Contains(t, problem, "claim_id")
	_, problem = checkQueuedAnswer(c, []byte(`{"id":"0190","claim_id":"cb-x-1","status":"stored","net_fee":`+net+`}`))
	assert.Contains(t, problem, "status")
	_, problem = checkQueuedAnswer(c, []byte(`{"id":"0190","claim_id":"cb-x-1","status":"queued","net_fee":"1.00"}`))
	assert.Contains(t, problem, "net_fee")
	id, problem = checkQueuedAnswer(c, []byte(`{"claim_id":"cb-x-1"}`))
	assert.Empty(t, id)
	assert.Contains(t, problem, "no id")
}

// A 202 is an acknowledgement, of a claim stored later.
func TestAcceptedCountsAsAcked(t *testing.T) {
	c := &loadkit.Claim{ExternalID: "cb-x-1", Lines: []loadkit.Line{{Fees: 10000, Allowed: 8000}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"0190","claim_id":"cb-x-1","status":"queued","net_fee":` + loadkit.FormatCents(c.NetFee()) + `}`))
	}))
	defer srv.Close()
	cfg := config{URL: srv.URL, Timeout: time.Second, Concurrency: 1, DrainWait: time.Second}
	l := &loader{cfg: cfg, client: newHTTPClient(cfg), rec: newRecorder()}
	sc := &sentClaim{Claim: c}
	status, err := l.post(t.Context(), sc)
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, status)
	assert.Equal(t, loadkit.Acked, sc.Outcome)
	assert.True(t, sc.Accepted)
	assert.Equal(t, "0190", sc.ID)
	assert.Empty(t, sc.Problem)
	res := &loadResult{Claims: []*sentClaim{sc, {Claim: c, Outcome: loadkit.Acked}}}
	assert.Equal(t, int64(1), res.acceptedClaims())
}
