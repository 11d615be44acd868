package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentileIsNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 1000; i++ {
		s = append(s, ms(i))
	}
	assert.Equal(t, ms(500), percentile(s, 50))
	assert.Equal(t, ms(900), percentile(s, 90))
	assert.Equal(t, ms(990), percentile(s, 99))
	assert.Equal(t, ms(999), percentile(s, 99.9))
	assert.Equal(t, ms(1000), percentile(s, 100))
	assert.Equal(t, ms(1), percentile(s, 0))

	// Few samples: p99 of ten is the largest, never an interpolated value.
	ten := []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(100)}
	assert.Equal(t, ms(100), percentile(ten, 99))
	assert.Equal(t, ms(5), percentile(ten, 50))
	assert.Equal(t, ms(9), percentile(ten, 90))
	assert.Equal(t, ms(7), percentile([]time.Duration{ms(7)}, 99.9))
	assert.Equal(t, time.Duration(0), percentile(nil, 50))
}

func TestLatenciesSortsACopy(t *testing.T) {
	in := []time.Duration{ms(30), ms(10), ms(20)}
	l := latencies(in)
	assert.Equal(t, Latency{P50: 20, P90: 30, P99: 30, P999: 30, Max: 30, Mean: 20}, l)
	assert.Equal(t, []time.Duration{ms(30), ms(10), ms(20)}, in, "the samples are not reordered")
}

func sampleResult() (*loadResult, config) {
	cfg := config{URL: "http://127.0.0.1:1", Mode: "mix", Concurrency: 4, Duration: 2 * time.Second,
		NPIs: 10, ZipfS: 1.1, MixTopRatio: 0.5, Seed: 1, RunID: "cb-x", Verify: true}
	two := &loadkit.Claim{ExternalID: "cb-x-1", Lines: make([]loadkit.Line, 2)}
	three := &loadkit.Claim{ExternalID: "cb-x-2", Lines: make([]loadkit.Line, 3)}
	res := &loadResult{
		Elapsed: 2 * time.Second,
		Ops: map[string]*opStats{
			opPostClaim: {latencies: []time.Duration{ms(10), ms(20), ms(30)},
				statuses: map[int]int64{201: 2, 422: 1}, errors: map[string]int64{}},
			opTopProviders: {latencies: []time.Duration{ms(1), ms(2), ms(3), ms(4)},
				statuses: map[int]int64{200: 2, 429: 1}, errors: map[string]int64{"timeout": 1}},
		},
		Claims: []*sentClaim{
			{Claim: two, Outcome: loadkit.Acked, Status: 201},
			{Claim: three, Outcome: loadkit.Acked, Status: 201},
			{Claim: &loadkit.Claim{ExternalID: "cb-x-3", Lines: make([]loadkit.Line, 5)}, Outcome: loadkit.Refused, Status: 422},
		},
	}
	return res, cfg
}

func TestReportFigures(t *testing.T) {
	res, cfg := sampleResult()
	rep := buildReport(cfg, res, &VerifyReport{Passed: true, ClaimsAcked: 2, ClaimsRefused: 1})
	assert.Equal(t, int64(7), rep.Requests)
	assert.Equal(t, 3.5, rep.RequestsPerSec)
	assert.Equal(t, int64(2), rep.ClaimsAcked, "only acknowledged claims count")
	assert.Equal(t, 1.0, rep.ClaimsPerSec)
	assert.Equal(t, int64(5), rep.LinesAcked)
	assert.Equal(t, 2.5, rep.LinesPerSec)
	require.Len(t, rep.Operations, 2)
	post, top := rep.Operations[0], rep.Operations[1]
	assert.Equal(t, opPostClaim, post.Op)
	assert.Equal(t, map[string]int64{"201": 2, "422": 1}, post.Statuses)
	assert.Equal(t, 20.0, post.Latency.P50)
	assert.Equal(t, opTopProviders, top.Op)
	assert.Equal(t, int64(1), top.RateLimited)
	assert.Equal(t, map[string]int64{"200": 2, "429": 1, "error: timeout": 1}, top.Statuses)
}

func TestTextReport(t *testing.T) {
	res, cfg := sampleResult()
	vr := &VerifyReport{ClaimsAcked: 2, Checks: []string{"something"}}
	vr.bad("provider %s is off by %d", "1234567890", 5)
	var b bytes.Buffer
	require.NoError(t, writeTextReport(&b, buildReport(cfg, res, vr)))
	out := b.String()
	for _, want := range []string{
		"mode=mix", "closed loop, 4 clients", "requests 7 (3.5/s)", "lines 5 (2.5/s)",
		"p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
		"post_claim", "201: 2", "422: 1", "429: 1", "error: timeout: 1",
		"TOP_PROVIDERS_RATE_LIMIT=0", "verification: FAIL", "problem: provider 1234567890 is off by 5",
	} {
		assert.Contains(t, out, want)
	}
}

func TestJSONReportRoundTrips(t *testing.T) {
	res, cfg := sampleResult()
	cfg.Verify = false
	var b bytes.Buffer
	require.NoError(t, writeJSONReport(&b, buildReport(cfg, res, nil)))
	var got Report
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	assert.Equal(t, 3.5, got.RequestsPerSec)
	assert.Equal(t, "-verify=false", got.VerifySkipped)
	assert.Nil(t, got.Verification)
	assert.Equal(t, 30.0, got.Operations[0].Latency.Max)
	assert.Contains(t, b.String(), `"p99_9"`)
}

func TestTopProblems(t *testing.T) {
	list := []loadkit.ProviderTotal{{NPI: "3", Cents: 300}, {NPI: "2", Cents: 200}, {NPI: "1", Cents: 200}}
	assert.Empty(t, topProblems(list, map[string]int64{"3": 300, "2": 200, "1": 200, "9": 0}, nil, 0))
	assert.NotEmpty(t, topProblems(list, map[string]int64{"3": 301}, nil, 0), "a wrong total")
	assert.NotEmpty(t, topProblems(list, map[string]int64{"4": 100}, nil, 0), "a short list must hold every provider with a total")
	assert.NotEmpty(t, topProblems([]loadkit.ProviderTotal{{NPI: "1", Cents: 200}, {NPI: "2", Cents: 200}}, nil, nil, 0), "ties are ordered by NPI descending")
	assert.NotEmpty(t, topProblems(list, nil, map[string]int64{"3": 50}, 100), "unknown baseline bounded by the old list's minimum")
	assert.Empty(t, topProblems(list, nil, map[string]int64{"3": 250}, 100))
}
