package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/grafanatest"
)

// Every PromQL expression of every Grafana dashboard (each panel's queries,
// in collapsed rows too, and the template variables' queries) parses, and
// names only metrics claimd exports and labels those metrics have. What is
// exported is what serve and a worker in async mode really show on /metrics
// after some traffic. Labelled metrics whose values are known start at 0,
// so only the metrics of sampledLater may be missing from that scrape: those
// are taken from docs/metrics.md (with the labels documented there).
func TestDashboardsQueryExportedMetrics(t *testing.T) {
	t.Parallel()
	dashboards, err := grafanatest.LoadDir("../../grafana/provisioning/dashboards")
	require.NoError(t, err)
	uid := provisionedDatasourceUID(t)

	cd := mustStartAsyncWithTraffic(t)
	exported := metricCatalogue{}
	for _, url := range cd.metricsURLs() {
		exported.addScrape(t, scrape(t, url))
	}
	cd.requireStop(t)
	exported.addDocumented(t, "../../docs/metrics.md", sampledLater)
	var documentedOnly []string
	for name, info := range exported {
		if info.source == "docs" {
			documentedOnly = append(documentedOnly, name)
		}
	}
	slices.Sort(documentedOnly)
	t.Logf("metrics without a series yet, known from docs/metrics.md: %s", strings.Join(documentedOnly, ", "))

	uids := map[string]string{}
	for _, d := range dashboards {
		t.Run(filepath.Base(d.Path), func(t *testing.T) {
			require.NotEmpty(t, d.UID, "the dashboard has a uid, for links and provisioning")
			require.NotContains(t, uids, d.UID, "dashboard uid %q is also that of %s", d.UID, uids[d.UID])
			uids[d.UID] = d.Path
			require.NotEmpty(t, d.Title)
			require.NotEmpty(t, d.Targets, "the dashboard queries something")
			for _, target := range d.Targets {
				require.Equal(t, grafanatest.Datasource{Type: "prometheus", UID: uid}, target.Datasource,
					"%s: the provisioned Prometheus data source", target)
				if err := exported.checkTarget(d, target); err != nil {
					t.Errorf("%s: %v\n\texpr: %s", target, err, target.Expr)
				}
			}
			for _, v := range d.Variables {
				if v.Type != "query" {
					continue
				}
				require.Equal(t, grafanatest.Datasource{Type: "prometheus", UID: uid}, v.Datasource,
					"variable %s: the provisioned Prometheus data source", v.Name)
				if err := exported.checkVariable(d, v); err != nil {
					t.Errorf("variable %s: %v\n\tquery: %s", v.Name, err, v.Query)
				}
			}
		})
	}
}

// Every dashboard is one Grafana accepts: decoded strictly with the types
// Grafana's own schemas generate (grafana-foundation-sdk), with each panel
// type's options and field config checked by its plugin's schema, so an
// unknown field, a misspelt option or a value of the wrong type fails here
// rather than when Grafana loads the file. (Grafana cannot run on this
// machine; this is the check that can.)
func TestDashboardsMatchGrafanaSchema(t *testing.T) {
	t.Parallel()
	plugins.RegisterDefaultPlugins()
	paths, err := filepath.Glob("../../grafana/provisioning/dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var d dashboard.Dashboard
		require.NoError(t, cogError(d.UnmarshalJSONStrict(raw)), "%s does not match Grafana's dashboard schema", path)
		require.NoError(t, cogError(d.Validate()), "%s", path)
		require.NotEmpty(t, d.Panels, "%s", path)
	}
}

// cogError is err, but nil for an empty cog.BuildErrors: the SDK returns its
// error list as an error even when the list is empty.
func cogError(err error) error {
	if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
		return nil
	}
	return err
}

// Every alert a dashboard names (in its description, or a panel's title or
// description: ClaimdRankingDrift, ...) is an alert of prometheus/alerts.yml,
// so that an operator who reads the name finds the alert and its runbook.
func TestDashboardsNameRealAlerts(t *testing.T) {
	t.Parallel()
	dashboards, err := grafanatest.LoadDir("../../grafana/provisioning/dashboards")
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	mustYAML(t, "../../prometheus/alerts.yml", &rules)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = true
			}
		}
	}
	require.NotEmpty(t, alerts, "prometheus/alerts.yml defines alerts")

	alertName := regexp.MustCompile(`\bClaimd[A-Z]\w+`)
	named := 0
	for _, d := range dashboards {
		texts := map[string]string{"the dashboard description": d.Description}
		for _, p := range d.Panels {
			texts[fmt.Sprintf("panel %q (row %q)", p.Title, p.Row)] = p.Title + "\n" + p.Description
		}
		for where, text := range texts {
			for _, name := range alertName.FindAllString(text, -1) {
				named++
				if !alerts[name] {
					t.Errorf("%s: %s names alert %s, which prometheus/alerts.yml does not define (it has %v)",
						d.Path, where, name, slices.Sorted(maps.Keys(alerts)))
				}
			}
		}
	}
	require.Positive(t, named, "the panels name the alerts that watch what they show")
}

// Panels sit on Grafana's 24-column grid without overlapping: those of
// expanded rows on the dashboard's grid, those of each collapsed row among
// themselves.
func TestDashboardsLayout(t *testing.T) {
	t.Parallel()
	dashboards, err := grafanatest.LoadDir("../../grafana/provisioning/dashboards")
	require.NoError(t, err)
	for _, d := range dashboards {
		grids := map[string][]grafanatest.Panel{} // "" for the dashboard's own grid, else the collapsed row
		for _, p := range d.Panels {
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("%s: panel %q: gridPos %+v is not on the 24-column grid", d.Path, p.Title, g)
			}
			grid := ""
			if p.Collapsed {
				grid = p.Row
			}
			for _, q := range grids[grid] {
				h := q.GridPos
				if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
					t.Errorf("%s: panels %q (%+v) and %q (%+v) overlap", d.Path, q.Title, h, p.Title, g)
				}
			}
			grids[grid] = append(grids[grid], p)
		}
	}
}

// provisionedDatasourceUID is the uid of the Prometheus data source Grafana
// is provisioned with, which every dashboard query must name.
func provisionedDatasourceUID(t *testing.T) string {
	t.Helper()
	var cfg struct {
		Datasources []struct {
			Type string `yaml:"type"`
			UID  string `yaml:"uid"`
		} `yaml:"datasources"`
	}
	mustYAML(t, "../../grafana/provisioning/datasources/prometheus.yaml", &cfg)
	for _, ds := range cfg.Datasources {
		if ds.Type == "prometheus" {
			require.NotEmpty(t, ds.UID, "the Prometheus data source has a fixed uid")
			return ds.UID
		}
	}
	t.Fatal("no Prometheus data source is provisioned")
	return ""
}

// metricInfo is what is known of one exported metric family.
type metricInfo struct {
	typ    string // counter, gauge, histogram, summary, untyped
	labels map[string]bool
	source string // "scrape", or "docs" for a labelled metric not yet in a scrape
}

// metricCatalogue is every metric family claimd exports, by name.
type metricCatalogue map[string]*metricInfo

// addScrape adds the families of a /metrics page, with the label names of
// all their series.
func (c metricCatalogue) addScrape(t *testing.T, page []byte) {
	t.Helper()
	textParser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := textParser.TextToMetricFamilies(bytes.NewReader(page))
	require.NoError(t, err)
	for name, f := range families {
		info := c[name]
		if info == nil {
			info = &metricInfo{typ: strings.ToLower(f.GetType().String()), labels: map[string]bool{}, source: "scrape"}
			c[name] = info
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				info.labels[l.GetName()] = true
			}
		}
	}
}

// documentedMetric is a row of a docs/metrics.md table:
// | `name` | type | labels | exported by | meaning |
var documentedMetric = regexp.MustCompile("(?m)^\\| `(claimd_[a-z0-9_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")

// sampledLater are the metrics a scrape right after start-up may lack, and why.
var sampledLater = map[string]string{
	"claimd_queue_messages": "the queue depths are read from the broker every 5 s, once connected",
}

// addDocumented adds the metrics of only, as docs/metrics.md lists them,
// when no scrape showed them.
func (c metricCatalogue) addDocumented(t *testing.T, path string, only map[string]string) {
	t.Helper()
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	rows := documentedMetric.FindAllStringSubmatch(string(doc), -1)
	require.Greater(t, len(rows), 30, "%s lists the metrics in tables", path)
	for _, m := range rows {
		name, typ, labelList := m[1], m[2], strings.TrimSpace(m[3])
		if _, scraped := c[name]; scraped || only[name] == "" {
			continue
		}
		info := &metricInfo{typ: typ, labels: map[string]bool{}, source: "docs"}
		for _, l := range strings.Split(labelList, ",") {
			if l = strings.TrimSpace(l); l != "—" && l != "" {
				info.labels[l] = true
			}
		}
		c[name] = info
	}
}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

// series resolves a series name to its family: a histogram's _bucket, _sum
// and _count series belong to it (the buckets with an "le" label), as do a
// summary's _sum and _count. It returns the labels the series has.
func (c metricCatalogue) series(name string) (map[string]bool, error) {
	labels := func(info *metricInfo, extra ...string) map[string]bool {
		out := maps.Clone(info.labels)
		for _, l := range append(extra, targetLabels...) {
			out[l] = true
		}
		return out
	}
	if info, ok := c[name]; ok {
		if info.typ == "histogram" {
			return nil, fmt.Errorf("%s is a classic histogram: query its _bucket, _sum or _count series", name)
		}
		return labels(info), nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch info := c[base]; {
		case info == nil:
		case info.typ == "histogram" && suffix == "_bucket":
			return labels(info, "le"), nil
		case info.typ == "histogram" || (info.typ == "summary" && suffix != "_bucket"):
			return labels(info), nil
		}
	}
	return nil, fmt.Errorf("metric %s is not exported by claimd serve or worker (not in their /metrics)", name)
}

// checkTarget parses a panel query and checks the metrics and labels it
// names, and the labels its legend shows.
func (c metricCatalogue) checkTarget(d *grafanatest.Dashboard, target grafanatest.Target) error {
	if strings.TrimSpace(target.Expr) == "" {
		return fmt.Errorf("empty query")
	}
	expr, err := d.Expand(target.Expr, "5m")
	if err != nil {
		return err
	}
	out, err := c.checkExpr(expr)
	if err != nil {
		return err
	}
	for _, l := range target.LegendLabels() {
		if out != nil && !out[l] {
			return fmt.Errorf("legend %q shows label %q, which the result does not have (it has %v)",
				target.Legend, l, slices.Sorted(maps.Keys(out)))
		}
	}
	return nil
}

// checkVariable checks a query variable: label_values(selector, label) must
// name an exported metric and a label of it; query_result(expr) must be a
// valid expression over exported metrics.
func (c metricCatalogue) checkVariable(d *grafanatest.Dashboard, v grafanatest.Variable) error {
	q, err := grafanatest.ParseVariableQuery(v.Query)
	if err != nil {
		return err
	}
	if q.Expr == "" {
		return nil // label_values(label): any series; nothing to check
	}
	expanded, err := d.Expand(q.Expr, "5m")
	if err != nil {
		return err
	}
	out, err := c.checkExpr(expanded)
	if err != nil {
		return err
	}
	if q.Label != "" && out != nil && !out[q.Label] {
		return fmt.Errorf("label_values asks for label %q, which %s does not have", q.Label, q.Expr)
	}
	return nil
}

// checkExpr parses expr, checks every selector and grouping in it, and
// returns the labels of its result (nil when that cannot be told).
func (c metricCatalogue) checkExpr(expr string) (map[string]bool, error) {
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("does not parse: %w", err)
	}
	return c.resultLabels(ast)
}

// resultLabels checks node and returns the label names of the series it
// evaluates to (nil: unknown, e.g. after label_replace, which checks
// nothing further up). A by() or on() label must be one the operand has.
func (c metricCatalogue) resultLabels(node parser.Node) (map[string]bool, error) {
	switch n := node.(type) {
	case *parser.VectorSelector:
		name := n.Name
		for _, m := range n.LabelMatchers {
			if m.Name == model.MetricNameLabel && name == "" {
				name = m.Value
			}
		}
		if name == "" {
			return nil, fmt.Errorf("selector %s names no metric", n)
		}
		labels, err := c.series(name)
		if err != nil {
			return nil, err
		}
		for _, m := range n.LabelMatchers {
			if m.Name != model.MetricNameLabel && !labels[m.Name] {
				return nil, fmt.Errorf("selector %s: %s has no label %q (it has %v)", n, name, m.Name, slices.Sorted(maps.Keys(labels)))
			}
		}
		return labels, nil
	case *parser.MatrixSelector:
		return c.resultLabels(n.VectorSelector)
	case *parser.SubqueryExpr:
		return c.resultLabels(n.Expr)
	case *parser.ParenExpr:
		return c.resultLabels(n.Expr)
	case *parser.UnaryExpr:
		return c.resultLabels(n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return map[string]bool{}, nil
	case *parser.Call:
		var args []map[string]bool
		for _, a := range n.Args {
			labels, err := c.resultLabels(a)
			if err != nil {
				return nil, err
			}
			args = append(args, labels)
		}
		switch n.Func.Name {
		case "vector", "time", "scalar", "pi":
			return map[string]bool{}, nil
		case "histogram_quantile":
			if args[1] == nil {
				return nil, nil
			}
			if !args[1]["le"] {
				return nil, fmt.Errorf("%s: its operand has no le label (sum by (..., le) over a _bucket rate)", n)
			}
			out := maps.Clone(args[1])
			delete(out, "le")
			return out, nil
		case "label_replace", "label_join":
			return nil, nil
		}
		for i, a := range n.Args {
			if a.Type() == parser.ValueTypeVector || a.Type() == parser.ValueTypeMatrix {
				return args[i], nil
			}
		}
		return map[string]bool{}, nil
	case *parser.AggregateExpr:
		if n.Param != nil {
			if _, err := c.resultLabels(n.Param); err != nil {
				return nil, err
			}
		}
		inner, err := c.resultLabels(n.Expr)
		if err != nil || inner == nil {
			return nil, err
		}
		for _, l := range n.Grouping {
			if !inner[l] {
				return nil, fmt.Errorf("%s: groups by %q, which %s does not have (it has %v)",
					n.ShortString(), l, n.Expr, slices.Sorted(maps.Keys(inner)))
			}
		}
		switch {
		case n.Op == parser.TOPK || n.Op == parser.BOTTOMK || n.Op == parser.LIMITK || n.Op == parser.LIMIT_RATIO:
			return inner, nil
		case n.Without:
			out := maps.Clone(inner)
			for _, l := range n.Grouping {
				delete(out, l)
			}
			return out, nil
		default:
			out := map[string]bool{}
			for _, l := range n.Grouping {
				out[l] = true
			}
			return out, nil
		}
	case *parser.BinaryExpr:
		lhs, err := c.resultLabels(n.LHS)
		if err != nil {
			return nil, err
		}
		rhs, err := c.resultLabels(n.RHS)
		if err != nil {
			return nil, err
		}
		if vm := n.VectorMatching; vm != nil && vm.On {
			for _, l := range vm.MatchingLabels {
				if (lhs != nil && !lhs[l]) || (rhs != nil && !rhs[l]) {
					return nil, fmt.Errorf("%s: matches on %q, which one side does not have", n.ShortString(), l)
				}
			}
		}
		lhsScalar := n.LHS.Type() == parser.ValueTypeScalar
		rhsScalar := n.RHS.Type() == parser.ValueTypeScalar
		switch {
		case lhs == nil || rhs == nil:
			return nil, nil
		case lhsScalar && !rhsScalar:
			return rhs, nil
		case !lhsScalar && !rhsScalar && !n.Op.IsSetOperator() && !maps.Equal(lhs, rhs) &&
			(n.VectorMatching == nil || len(n.VectorMatching.MatchingLabels) == 0):
			// Without on() or ignoring(), series match only when all their
			// labels are equal: operands grouped differently match nothing.
			return nil, fmt.Errorf("%s: its operands have different labels (%v and %v), so no series match",
				n.ShortString(), slices.Sorted(maps.Keys(lhs)), slices.Sorted(maps.Keys(rhs)))
		case n.Op == parser.LOR: // series of either side
			out := maps.Clone(lhs)
			maps.Copy(out, rhs)
			return out, nil
		default: // one-to-one or many-to-one: the left side's labels
			return lhs, nil
		}
	}
	return nil, fmt.Errorf("unexpected PromQL node %T: %s", node, node)
}
