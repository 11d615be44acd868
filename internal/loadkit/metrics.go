package loadkit

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
)

// Metrics is one scrape of a /metrics exposition, by metric family name.
type Metrics map[string]*dto.MetricFamily

// Scrape reads base's /metrics (the Prometheus text format) with expfmt.
func Scrape(ctx context.Context, base string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics answered %d", base, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", base, err)
	}
	return Metrics(families), nil
}

// Samples lists the samples of a counter, gauge or untyped metric, each by
// its name with labels as the exposition writes them (`name{a="b"}`), or
// the bare name when it has none.
func (m Metrics) Samples(name string) map[string]float64 {
	out := map[string]float64{}
	f := m[name]
	if f == nil {
		return out
	}
	for _, s := range f.GetMetric() {
		v, ok := value(s)
		if !ok {
			continue
		}
		out[seriesName(name, s.GetLabel())] = v
	}
	return out
}

// Sample is one sample and whether it exists. A sample given with labels
// (`name{a="b"}`) must match exactly; a bare name sums every label set of
// that metric.
func (m Metrics) Sample(sample string) (float64, bool) {
	name, _, labelled := strings.Cut(sample, "{")
	samples := m.Samples(name)
	if labelled {
		v, ok := samples[sample]
		return v, ok
	}
	var sum float64
	for _, v := range samples {
		sum += v
	}
	return sum, len(samples) > 0
}

// Histogram is a histogram summed over its label sets: the cumulative count
// at each upper bound, ascending, +Inf last.
func (m Metrics) Histogram(name string) (bounds, counts []float64, err error) {
	f := m[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		return nil, nil, fmt.Errorf("no histogram %s in the metrics", name)
	}
	byBound := map[float64]float64{}
	for _, s := range f.GetMetric() {
		h := s.GetHistogram()
		inf := false
		for _, b := range h.GetBucket() {
			byBound[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			inf = inf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !inf { // the +Inf bucket is the sample count
			byBound[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	bounds = slices.Sorted(maps.Keys(byBound))
	for _, b := range bounds {
		counts = append(counts, byBound[b])
	}
	return bounds, counts, nil
}

func value(s *dto.Metric) (float64, bool) {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue(), true
	case s.Gauge != nil:
		return s.Gauge.GetValue(), true
	case s.Untyped != nil:
		return s.Untyped.GetValue(), true
	}
	return 0, false
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// seriesName writes name{a="b",...} as the text format does.
func seriesName(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = l.GetName() + `="` + labelEscaper.Replace(l.GetValue()) + `"`
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// ScrapeSample scrapes base once and reads one sample (see Metrics.Sample).
func ScrapeSample(ctx context.Context, base, sample string) (float64, bool, error) {
	m, err := Scrape(ctx, base)
	if err != nil {
		return 0, false, err
	}
	v, ok := m.Sample(sample)
	return v, ok, nil
}

// reconcilePasses is the count of successful reconciliation passes.
const reconcilePasses = `claimd_reconcile_runs_total{result="ok"}`

// ReconcilePasses is how many reconciliation passes of the claimd at base
// have succeeded since it started.
func ReconcilePasses(ctx context.Context, base string) (float64, error) {
	v, found, err := ScrapeSample(ctx, base, reconcilePasses)
	if err == nil && !found {
		err = fmt.Errorf("claimd at %s exports no %s", base, reconcilePasses)
	}
	return v, err
}

// WaitReconciled waits, polling every interval up to timeout, until the
// claimd at base has completed at least passes successful reconciliation
// passes since it started.
func WaitReconciled(ctx context.Context, base string, passes float64, interval, timeout time.Duration) error {
	return proc.Poll(ctx, interval, timeout, func() error {
		n, err := ReconcilePasses(ctx, base)
		if err != nil {
			return err
		}
		if n < passes {
			return fmt.Errorf("%s is %g, waiting for %g", reconcilePasses, n, passes)
		}
		return nil
	})
}
