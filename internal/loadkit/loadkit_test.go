package loadkit

import (
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCentsFormatAndParse(t *testing.T) {
	for c, want := range map[int64]string{
		0: "0.00", 5: "0.05", 99: "0.99", 232000: "2320.00",
		-5: "-0.05", -99: "-0.99", -100: "-1.00", -12345: "-123.45",
	} {
		assert.Equal(t, want, FormatCents(c), "%d cents", c)
		got, err := ParseCents(want)
		require.NoError(t, err, want)
		assert.Equal(t, c, got, want)
		got, err = ParseExactCents(want)
		require.NoError(t, err, want)
		assert.Equal(t, c, got, want)
	}
	for s, want := range map[string]int64{"7.5": 750, "7": 700, "-7.5": -750, "-0.5": -50} {
		got, err := ParseCents(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
		_, err = ParseExactCents(s)
		assert.Error(t, err, "%s has not two decimals", s)
	}
	for _, s := range []string{"", "-", ".5", "-.5", "1.234", "1e3", "1.-5", "--1.00", "+1.00", "abc", "1,000.00", "99999999999999999999.00"} {
		_, err := ParseCents(s)
		assert.Error(t, err, s)
	}
}

func TestOutcomeOf(t *testing.T) {
	for status, want := range map[int]Outcome{
		0: Unknown, 200: Acked, 201: Acked, 202: Acked, 400: Refused, 422: Refused,
		409: Unknown, 429: Unknown, 500: Unknown, 503: Unknown,
	} {
		assert.Equal(t, want, OutcomeOf(status), "status %d", status)
	}
	assert.Equal(t, "acknowledged", Acked.String())
}

func TestParseTopAndTopN(t *testing.T) {
	list, src, err := ParseTop([]byte(`{"top_providers":[{"provider_npi":"2","total_net_fee":12.50},` +
		`{"provider_npi":"1","total_net_fee":-3.05}],"source":"redis"}`))
	require.NoError(t, err)
	assert.Equal(t, "redis", src)
	assert.Equal(t, []ProviderTotal{{"2", 1250}, {"1", -305}}, list)

	_, _, err = ParseTop([]byte(`{"top_providers":[{"provider_npi":"2","total_net_fee":12.5}],"source":"redis"}`))
	assert.Error(t, err, "money must have two decimals")
	_, _, err = ParseTop([]byte(`{"top_providers":[]}`))
	assert.Error(t, err, "an answer without a source")

	got := TopN(map[string]int64{"a": 5, "b": 7, "c": 5, "d": -1}, 3)
	assert.Equal(t, []ProviderTotal{{"b", 7}, {"c", 5}, {"a", 5}}, got, "ties by NPI descending")
}

const exposition = `# HELP claimd_queue_acked_total Messages acknowledged.
# TYPE claimd_queue_acked_total counter
claimd_queue_acked_total 1234
# TYPE claimd_reconcile_runs_total counter
claimd_reconcile_runs_total{result="error"} 2
claimd_reconcile_runs_total{result="ok"} 5
# TYPE claimd_queue_messages gauge
claimd_queue_messages{queue="claims",state="ready"} 7
# TYPE claimd_queue_end_to_end_seconds histogram
claimd_queue_end_to_end_seconds_bucket{mode="a",le="0.005"} 1
claimd_queue_end_to_end_seconds_bucket{mode="a",le="0.01"} 3
claimd_queue_end_to_end_seconds_bucket{mode="a",le="+Inf"} 4
claimd_queue_end_to_end_seconds_sum{mode="a"} 0.5
claimd_queue_end_to_end_seconds_count{mode="a"} 4
claimd_queue_end_to_end_seconds_bucket{mode="b",le="0.005"} 0
claimd_queue_end_to_end_seconds_bucket{mode="b",le="0.01"} 2
claimd_queue_end_to_end_seconds_bucket{mode="b",le="+Inf"} 2
claimd_queue_end_to_end_seconds_sum{mode="b"} 0.01
claimd_queue_end_to_end_seconds_count{mode="b"} 2
`

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(exposition))
	}))
	defer srv.Close()
	ctx := t.Context()
	m, err := Scrape(ctx, srv.URL)
	require.NoError(t, err)

	v, ok := m.Sample("claimd_queue_acked_total")
	assert.True(t, ok)
	assert.Equal(t, 1234.0, v)
	v, ok = m.Sample(`claimd_reconcile_runs_total{result="ok"}`)
	assert.True(t, ok)
	assert.Equal(t, 5.0, v, "a labelled sample matches exactly")
	v, ok = m.Sample("claimd_reconcile_runs_total")
	assert.True(t, ok)
	assert.Equal(t, 7.0, v, "a bare name sums the label sets")
	_, ok = m.Sample(`claimd_reconcile_runs_total{result="skipped"}`)
	assert.False(t, ok)
	_, ok = m.Sample("no_such_metric")
	assert.False(t, ok)
	assert.Equal(t, map[string]float64{`claimd_queue_messages{queue="claims",state="ready"}`: 7},
		m.Samples("claimd_queue_messages"), "series named as the exposition writes them")

	bounds, counts, err := m.Histogram("claimd_queue_end_to_end_seconds")
	require.NoError(t, err)
	assert.Equal(t, []float64{0.005, 0.01, math.Inf(1)}, bounds)
	assert.Equal(t, []float64{1, 5, 6}, counts, "summed over label sets, cumulative")
	_, _, err = m.Histogram("claimd_queue_acked_total")
	assert.Error(t, err, "a counter is no histogram")

	n, err := ReconcilePasses(ctx, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 5.0, n)
	require.NoError(t, WaitReconciled(ctx, srv.URL, 5, 10*time.Millisecond, time.Second))
	assert.Error(t, WaitReconciled(ctx, srv.URL, 6, 10*time.Millisecond, 50*time.Millisecond))

	_, err = Scrape(ctx, srv.URL+"/nothing")
	assert.Error(t, err)
}
