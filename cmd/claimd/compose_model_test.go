package main

// The docker-compose.yml model TestComposeFile reads: services, their
// environment, ports, mounts, dependencies and health checks, in every form
// compose accepts for them.

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string       `yaml:"image"`
	Build       buildSpec    `yaml:"build"`
	Command     stringOrList `yaml:"command"`
	Environment yaml.Node    `yaml:"environment"`
	Ports       []yaml.Node  `yaml:"ports"`
	Volumes     []yaml.Node  `yaml:"volumes"`
	DependsOn   yaml.Node    `yaml:"depends_on"`
	Healthcheck *healthcheck `yaml:"healthcheck"`
	Restart     string       `yaml:"restart"`
	Hostname    string       `yaml:"hostname"`
}

type healthcheck struct {
	Test    stringOrList `yaml:"test"`
	Disable bool         `yaml:"disable"`
}

// stringOrList is a compose field given as a string or a list of strings.
type stringOrList struct {
	set    bool
	isList bool
	items  []string
}

func (s *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	s.set = true
	if n.Kind == yaml.ScalarNode {
		s.items = []string{n.Value}
		return nil
	}
	s.isList = true
	return n.Decode(&s.items)
}

func (s stringOrList) list() []string { return s.items }

type buildSpec struct {
	set                 bool
	context, dockerfile string
}

func (b *buildSpec) UnmarshalYAML(n *yaml.Node) error {
	b.set = true
	if n.Kind == yaml.ScalarNode {
		b.context = n.Value
		return nil
	}
	var long struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	b.context, b.dockerfile = long.Context, long.Dockerfile
	return nil
}

func (b buildSpec) contextAndDockerfile() (string, string) {
	if !b.set {
		return "", ""
	}
	return path.Clean(cmp.Or(b.context, ".")), cmp.Or(b.dockerfile, "Dockerfile")
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func loadCompose(t *testing.T, root string) *compose {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	// Compose substitutes ${VAR} and $VAR everywhere, from the caller's
	// environment or .env: values that depend on them cannot be checked here.
	for i, line := range strings.Split(string(b), "\n") {
		if code, _, _ := strings.Cut(line, " #"); strings.Contains(code, "$") && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			t.Fatalf("docker-compose.yml:%d uses $ (compose interpolation), which this test does not model; write the value out: %s", i+1, line)
		}
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return &c
}

// deref follows a YAML alias (*name) to the node it names.
func deref(n yaml.Node) yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = *n.Alias
	}
	return n
}

func (c *compose) serviceNames() []string {
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// env is a service's environment, from either compose form (a mapping, or a
// list of KEY=VALUE). A variable without a value would be taken from the
// caller's environment, which this file must not depend on.
func (c *compose) env(t *testing.T, svc string) map[string]string {
	t.Helper()
	n := deref(c.Services[svc].Environment)
	env := map[string]string{}
	switch n.Kind {
	case 0:
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			t.Fatalf("service %s: environment: %v", svc, err)
		}
		for k, v := range m {
			switch v := v.(type) {
			case nil:
				t.Errorf("service %s: %s has no value, so compose would take the caller's", svc, k)
			case string:
				env[k] = v
			case int, bool, float64:
				env[k] = fmt.Sprint(v)
			default:
				t.Errorf("service %s: %s is a %T, not a scalar", svc, k, v)
			}
		}
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			t.Fatalf("service %s: environment: %v", svc, err)
		}
		for _, kv := range list {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Errorf("service %s: %s has no value, so compose would take the caller's", svc, k)
			}
			if _, dup := env[k]; dup {
				t.Errorf("service %s sets %s twice", svc, k)
			}
			env[k] = v
		}
	default:
		t.Fatalf("service %s: environment is neither a mapping nor a list", svc)
	}
	return env
}

// dependsOn maps each dependency to its condition (service_started for the
// short list form).
func (c *compose) dependsOn(t *testing.T, svc string) map[string]string {
	t.Helper()
	n := deref(c.Services[svc].DependsOn)
	deps := map[string]string{}
	switch n.Kind {
	case 0:
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			t.Fatalf("service %s: depends_on: %v", svc, err)
		}
		for _, d := range list {
			deps[d] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			t.Fatalf("service %s: depends_on: %v", svc, err)
		}
		for d, v := range m {
			deps[d] = cmp.Or(v.Condition, "service_started")
		}
	default:
		t.Fatalf("service %s: depends_on is neither a list nor a mapping", svc)
	}
	return deps
}

// command is the claimd subcommand a service runs: its command, or the
// Dockerfile's CMD.
func (c *compose) command(t *testing.T, svc string, df *dockerfile) string {
	t.Helper()
	cmd := c.Services[svc].Command
	args := df.cmd
	if cmd.set {
		args = cmd.list()
		if !cmd.isList {
			args = strings.Fields(args[0])
		}
	}
	if len(args) != 1 {
		return strings.Join(args, " ")
	}
	return args[0]
}

type port struct {
	hostIP    string
	published string
	target    int
}

// ports reads both compose forms: "[ip:][published:]target[/proto]" and the
// long mapping.
func (c *compose) ports(t *testing.T, svc string) []port {
	t.Helper()
	var ports []port
	for _, n := range c.Services[svc].Ports {
		n = deref(n)
		var p port
		if n.Kind == yaml.ScalarNode {
			spec, _, _ := strings.Cut(n.Value, "/")
			parts := strings.Split(spec, ":")
			var err error
			if p.target, err = strconv.Atoi(parts[len(parts)-1]); err != nil {
				t.Errorf("service %s: port %q: container port is not a number (ranges are not supported here)", svc, n.Value)
				continue
			}
			if len(parts) >= 2 {
				p.published = parts[len(parts)-2]
			}
			if len(parts) == 3 {
				p.hostIP = parts[0]
			}
			if len(parts) > 3 {
				t.Errorf("service %s: port %q: IPv6 host addresses are not supported here", svc, n.Value)
			}
		} else {
			var long struct {
				Target    int    `yaml:"target"`
				Published string `yaml:"published"`
				HostIP    string `yaml:"host_ip"`
			}
			if err := n.Decode(&long); err != nil {
				t.Fatalf("service %s: ports: %v", svc, err)
			}
			p = port{hostIP: long.HostIP, published: long.Published, target: long.Target}
		}
		ports = append(ports, p)
	}
	return ports
}

type mount struct {
	kind           string // bind or volume
	source, target string
	readOnly       bool
}

// mounts reads both compose forms: "source:target[:mode]" (a source starting
// with . / or ~ is a host path) and the long mapping.
func (c *compose) mounts(t *testing.T, svc string) []mount {
	t.Helper()
	var ms []mount
	for _, n := range c.Services[svc].Volumes {
		n = deref(n)
		var m mount
		if n.Kind == yaml.ScalarNode {
			parts := strings.Split(n.Value, ":")
			switch len(parts) {
			case 1:
				t.Errorf("service %s: volume %q is anonymous; name it", svc, n.Value)
				continue
			case 2, 3:
				m.source, m.target = parts[0], parts[1]
				if len(parts) == 3 {
					m.readOnly = slices.Contains(strings.Split(parts[2], ","), "ro")
				}
			default:
				t.Errorf("service %s: volume %q: cannot read it", svc, n.Value)
				continue
			}
			m.kind = "volume"
			if strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") || strings.HasPrefix(m.source, "~") {
				m.kind = "bind"
			}
		} else {
			var long struct {
				Type     string `yaml:"type"`
				Source   string `yaml:"source"`
				Target   string `yaml:"target"`
				ReadOnly bool   `yaml:"read_only"`
			}
			if err := n.Decode(&long); err != nil {
				t.Fatalf("service %s: volumes: %v", svc, err)
			}
			if long.Type != "bind" && long.Type != "volume" {
				t.Errorf("service %s: volume type %q is not checked here", svc, long.Type)
				continue
			}
			m = mount{kind: long.Type, source: long.Source, target: long.Target, readOnly: long.ReadOnly}
		}
		m.target = path.Clean(m.target)
		ms = append(ms, m)
	}
	return ms
}

func (c *compose) mountAt(t *testing.T, svc, target string) (mount, bool) {
	for _, m := range c.mounts(t, svc) {
		if m.target == target {
			return m, true
		}
	}
	return mount{}, false
}

// hostPath is the repository path a container path of svc comes from,
// through its bind mounts (the deepest one wins); "" when none covers it.
func (c *compose) hostPath(t *testing.T, svc, containerPath string) string {
	t.Helper()
	containerPath = path.Clean(containerPath)
	best, host := "", ""
	for _, m := range c.mounts(t, svc) {
		if m.kind != "bind" || filepath.IsAbs(m.source) {
			continue
		}
		if rel, ok := strings.CutPrefix(containerPath, m.target); ok && (rel == "" || strings.HasPrefix(rel, "/")) && len(m.target) > len(best) {
			best, host = m.target, filepath.Join(repoRoot(t), m.source, filepath.FromSlash(rel))
		}
	}
	return host
}

// flagValue is the value of --name=value or --name value in a command.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func hasFlagValue(args []string, name, value string) bool { return flagValue(args, name) == value }

// prometheusPort is the port Prometheus listens on: the image's default,
// unless the service's command moves it.
func prometheusPort(t *testing.T, c *compose) int {
	if a := flagValue(c.Services["prometheus"].Command.list(), "--web.listen-address"); a != "" {
		return addrPort(t, "prometheus --web.listen-address", a)
	}
	return 9090
}

func grafanaPort(c *compose) int {
	if p, err := strconv.Atoi(c.envNoT("grafana")["GF_SERVER_HTTP_PORT"]); err == nil {
		return p
	}
	return 3000
}

// envNoT is env for lookups outside a test's checks (mapping form only; the
// checks themselves use env).
func (c *compose) envNoT(svc string) map[string]string {
	var m map[string]string
	n := deref(c.Services[svc].Environment)
	_ = n.Decode(&m)
	return m
}
