package grafanatest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A dashboard as Grafana saves it: an expanded row whose panels follow it on
// the grid (listed out of order here), a collapsed row holding its panels,
// and variables in both the old (string) and the Grafana 10+ (object) form.
const sample = `{
  "uid": "u", "title": "t",
  "panels": [
    {"type": "row", "title": "B", "collapsed": true, "gridPos": {"x": 0, "y": 10},
     "panels": [{"type": "stat", "title": "nested", "gridPos": {"x": 0, "y": 11},
                 "datasource": {"type": "prometheus", "uid": "p"},
                 "targets": [{"refId": "A", "expr": "up{job=~\"$job\"}", "legendFormat": "{{ job }} {{instance}}"}]}]},
    {"type": "timeseries", "title": "second", "gridPos": {"x": 8, "y": 1},
     "targets": [{"refId": "A", "expr": "rate(x[$__rate_interval])", "datasource": {"type": "prometheus", "uid": "q"}}]},
    {"type": "row", "title": "A", "collapsed": false, "gridPos": {"x": 0, "y": 0}, "panels": []},
    {"type": "timeseries", "title": "first", "description": "see alert X", "gridPos": {"x": 0, "y": 1, "w": 8, "h": 8},
     "datasource": {"type": "prometheus", "uid": "p"},
     "targets": [{"refId": "A", "expr": "sum(y{i=~\"${instance:regex}\"}[$__range])"}]}
  ],
  "templating": {"list": [
    {"name": "job", "type": "query", "query": "label_values(up, job)", "includeAll": true, "allValue": ".+"},
    {"name": "instance", "type": "query", "query": {"query": "label_values(up{job=~\"$job\"}, instance)", "refId": "X"}}
  ]}
}`

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.json")
	require.NoError(t, os.WriteFile(path, []byte(sample), 0o644))
	d, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, "u", d.UID)

	var got []string
	for _, tg := range d.Targets {
		got = append(got, tg.Row+"/"+tg.Panel+"/"+tg.Datasource.UID)
	}
	require.Equal(t, []string{"A/first/p", "A/second/q", "B/nested/p"}, got, "grid order, rows, datasource of the target or else the panel")
	require.Equal(t, []string{"job", "instance"}, d.Targets[2].LegendLabels())

	var panels []string
	for _, p := range d.Panels {
		panels = append(panels, fmt.Sprintf("%s/%s/%v", p.Row, p.Title, p.Collapsed))
	}
	require.Equal(t, []string{"A/A/false", "A/first/false", "A/second/false", "B/B/false", "B/nested/true"}, panels)
	require.Equal(t, "see alert X", d.Panels[1].Description)
	require.Equal(t, GridPos{X: 0, Y: 1, W: 8, H: 8}, d.Panels[1].GridPos)

	require.Len(t, d.Variables, 2)
	require.Equal(t, `label_values(up{job=~"$job"}, instance)`, d.Variables[1].Query)

	for _, tc := range []struct{ in, want string }{
		{`rate(x[$__rate_interval])`, `rate(x[1m])`},
		{`sum(y{i=~"${instance:regex}"}[$__range])`, `sum(y{i=~".*"}[1m])`},
		{`up{job=~"$job"} or up{job=~"[[job]]"}`, `up{job=~".+"} or up{job=~".+"}`},
	} {
		out, err := d.Expand(tc.in, "1m")
		require.NoError(t, err)
		require.Equal(t, tc.want, out)
	}
	_, err = d.Expand(`up{job=~"$jbo"}`, "1m")
	require.ErrorContains(t, err, "$jbo is not a variable")
	_, err = d.Expand(`rate(x[$__range])`, "a minute")
	require.ErrorContains(t, err, `window "a minute"`)
}

// The numeric time variables follow the window; a label_replace
// replacement ($1) is no variable.
func TestExpandBuiltins(t *testing.T) {
	d := &Dashboard{}
	for _, tc := range []struct{ in, window, want string }{
		{`increase(x[$__range]) / $__range_s`, "5m", `increase(x[5m]) / 300`},
		{`increase(x[$__range]) / $__range_s`, "1m", `increase(x[1m]) / 60`},
		{`x / ${__range_ms} + x / [[__interval_ms]]`, "90s", `x / 90000 + x / 90000`},
		{`label_replace(up, "host", "$1", "instance", "(.*):.*")`, "1m", `label_replace(up, "host", "$1", "instance", "(.*):.*")`},
		{`label_replace(up, "a", "${1}x", "b", "(.*)")`, "1m", `label_replace(up, "a", "${1}x", "b", "(.*)")`},
	} {
		out, err := d.Expand(tc.in, tc.window)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, out, tc.in)
	}
}

func TestParseVariableQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want VariableQuery
	}{
		{`label_values(claimd_build_info, job)`, VariableQuery{Expr: "claimd_build_info", Label: "job"}},
		{`label_values(up{job=~"a,b"},instance)`, VariableQuery{Expr: `up{job=~"a,b"}`, Label: "instance"}},
		{`label_values(job)`, VariableQuery{Label: "job"}},
		{`query_result(sum by (job) (up))`, VariableQuery{Expr: "sum by (job) (up)"}},
	} {
		got, err := ParseVariableQuery(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	_, err := ParseVariableQuery("metrics(claimd_)")
	require.Error(t, err)
}
