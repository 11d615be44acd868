// Package grafanatest reads the Grafana dashboards of
// grafana/provisioning/dashboards for tests: every PromQL expression a panel
// queries (with its row and panel, in collapsed rows too) and every template
// variable, and it expands Grafana's variables ($__rate_interval, $job, ...)
// so that an expression can be parsed by promql/parser or sent to a real
// Prometheus.
package grafanatest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Dashboard is one dashboard JSON file.
type Dashboard struct {
	Path        string
	UID         string
	Title       string
	Description string
	Panels      []Panel // every panel but the rows, in grid order
	Targets     []Target
	Variables   []Variable
}

// Panel is one panel (not a row) of a dashboard.
type Panel struct {
	Row         string // title of the row the panel is in (a row's own title); "" above the first row
	Collapsed   bool   // in a collapsed row, whose panels have a grid of their own (false for rows)
	Title       string
	Type        string
	Description string
	GridPos     GridPos
}

// GridPos is where a panel or row sits on the dashboard's 24-column grid.
type GridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Target is one query of one panel.
type Target struct {
	Row        string // title of the row the panel is in; "" above the first row
	Panel      string // panel title
	PanelType  string // timeseries, stat, table, ...
	Datasource Datasource
	RefID      string
	Expr       string // PromQL, with Grafana variables unexpanded
	Legend     string // legendFormat, e.g. "{{route}} {{code}}"
}

// String names the target for failure messages.
func (t Target) String() string {
	return fmt.Sprintf("row %q, panel %q, query %s", t.Row, t.Panel, t.RefID)
}

// Datasource is a panel's or target's data source reference.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a template variable.
type Variable struct {
	Name       string
	Type       string // query, custom, interval, ...
	Query      string // for query variables: "label_values(metric{...}, label)" etc.
	IncludeAll bool
	AllValue   string
	Datasource Datasource
}

// builtinDuration are Grafana's variables that stand for a time window.
var builtinDuration = []string{"__rate_interval", "__interval", "__range", "__auto"}

// builtinNumber are Grafana's variables that stand for the time window as a
// number: in milliseconds or seconds.
var builtinNumber = map[string]time.Duration{"__interval_ms": time.Millisecond, "__range_ms": time.Millisecond, "__range_s": time.Second}

// variableRef matches $name, ${name}, ${name:format} and [[name]]. A name
// starts with a letter or an underscore, so the $1 of a label_replace
// replacement is not a variable.
var variableRef = regexp.MustCompile(`\$([A-Za-z_]\w*)|\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]`)

// Expand replaces Grafana's variables in expr: the time-window ones by
// window (a PromQL duration such as "5m"; $__range_s, $__range_ms and
// $__interval_ms by the same window as a number of seconds or
// milliseconds), and each template variable by the value Grafana sends when
// "All" is selected (its allValue; ".*" when it has none). A variable the
// dashboard does not define is an error.
func (d *Dashboard) Expand(expr, window string) (string, error) {
	span, err := model.ParseDuration(window)
	if err != nil {
		return "", fmt.Errorf("window %q: %w", window, err)
	}
	var errs []string
	out := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if slices.Contains(builtinDuration, name) {
			return window
		}
		if unit, ok := builtinNumber[name]; ok {
			return strconv.FormatInt(int64(time.Duration(span)/unit), 10)
		}
		for _, v := range d.Variables {
			if v.Name == name {
				if v.AllValue != "" {
					return v.AllValue
				}
				return ".*"
			}
		}
		errs = append(errs, fmt.Sprintf("%s is not a variable of the dashboard", ref))
		return ref
	})
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// VariableQuery is what a Prometheus query variable asks for.
type VariableQuery struct {
	Expr  string // the series selector of label_values, or the expression of query_result; "" for label_values(label)
	Label string // the label of label_values
}

var (
	labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(?:(.*\S)\s*,)?\s*(\w+)\s*\)\s*$`)
	queryResultQuery = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
)

// ParseVariableQuery splits a Prometheus variable query: label_values(label),
// label_values(selector, label) or query_result(expr).
func ParseVariableQuery(q string) (VariableQuery, error) {
	if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
		return VariableQuery{Expr: m[1], Label: m[2]}, nil
	}
	if m := queryResultQuery.FindStringSubmatch(q); m != nil {
		return VariableQuery{Expr: m[1]}, nil
	}
	return VariableQuery{}, fmt.Errorf("variable query %q: not label_values(...) or query_result(...)", q)
}

// LoadDir reads every *.json file under dir (as Grafana's file provider
// does), sorted by path. It is an error if there is none.
func LoadDir(dir string) ([]*Dashboard, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(path, ".json") {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no dashboard (*.json) under %s", dir)
	}
	sort.Strings(paths)
	var out []*Dashboard
	for _, p := range paths {
		d, err := Load(p)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// panelJSON is the part of a panel (or row) that is read.
type panelJSON struct {
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Collapsed   bool        `json:"collapsed"`
	Datasource  *Datasource `json:"datasource"`
	GridPos     GridPos     `json:"gridPos"`
	Targets     []struct {
		RefID        string      `json:"refId"`
		Expr         string      `json:"expr"`
		LegendFormat string      `json:"legendFormat"`
		Datasource   *Datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panelJSON `json:"panels"` // a row's panels while it is collapsed
}

type dashboardJSON struct {
	UID         string      `json:"uid"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Panels      []panelJSON `json:"panels"`
	Templating  struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"` // a string, or {"query": "...", ...} since Grafana 10
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
			Datasource *Datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// Load reads one dashboard JSON file. Panels of an expanded row follow the
// row on the grid; those of a collapsed row are nested in it: both count as
// the row's.
func Load(path string) (*Dashboard, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var dj dashboardJSON
	if err := json.Unmarshal(raw, &dj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &Dashboard{Path: path, UID: dj.UID, Title: dj.Title, Description: dj.Description}

	panels := slices.Clone(dj.Panels)
	slices.SortStableFunc(panels, func(a, b panelJSON) int {
		if a.GridPos.Y != b.GridPos.Y {
			return a.GridPos.Y - b.GridPos.Y
		}
		return a.GridPos.X - b.GridPos.X
	})
	row, collapsed := "", false
	var add func(p panelJSON)
	add = func(p panelJSON) {
		if p.Type == "row" {
			// The row's header is on the dashboard's own grid, one unit high.
			d.Panels = append(d.Panels, Panel{Row: p.Title, Title: p.Title, Type: p.Type,
				Description: p.Description, GridPos: p.GridPos})
			row, collapsed = p.Title, p.Collapsed
			for _, nested := range p.Panels {
				add(nested)
			}
			return
		}
		d.Panels = append(d.Panels, Panel{Row: row, Collapsed: collapsed, Title: p.Title, Type: p.Type,
			Description: p.Description, GridPos: p.GridPos})
		for _, t := range p.Targets {
			ds := t.Datasource
			if ds == nil {
				ds = p.Datasource
			}
			if ds == nil {
				ds = &Datasource{}
			}
			d.Targets = append(d.Targets, Target{Row: row, Panel: p.Title, PanelType: p.Type,
				Datasource: *ds, RefID: t.RefID, Expr: t.Expr, Legend: t.LegendFormat})
		}
	}
	for _, p := range panels {
		add(p)
	}

	for _, v := range dj.Templating.List {
		q, err := variableQueryText(v.Query)
		if err != nil {
			return nil, fmt.Errorf("%s: variable %s: %w", path, v.Name, err)
		}
		ds := Datasource{}
		if v.Datasource != nil {
			ds = *v.Datasource
		}
		d.Variables = append(d.Variables, Variable{Name: v.Name, Type: v.Type, Query: q,
			IncludeAll: v.IncludeAll, AllValue: v.AllValue, Datasource: ds})
	}
	return d, nil
}

// variableQueryText reads a variable's query, saved as a plain string or,
// since Grafana 10, as an object whose "query" holds it.
func variableQueryText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("query is neither a string nor an object with a query: %s", raw)
	}
	return obj.Query, nil
}

// legendLabel matches the {{label}} references of a legendFormat.
var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// LegendLabels lists the labels a legendFormat shows ("__auto" shows none).
func (t Target) LegendLabels() []string {
	var out []string
	for _, m := range legendLabel.FindAllStringSubmatch(t.Legend, -1) {
		out = append(out, m[1])
	}
	return out
}
