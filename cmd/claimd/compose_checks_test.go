package main

// The checks TestComposeFile runs against claimd's side: its settings and
// defaults, listen addresses, URLs, health checks, and the Prometheus and
// Grafana files the stack mounts.

import (
	"cmp"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func isSetting(name string) bool {
	return slices.ContainsFunc(settings, func(s setting) bool { return s.name == name })
}

// effective is what loadConfig reads for name: the value set, or the default.
func effective(env map[string]string, name string) string {
	if v := strings.TrimSpace(env[name]); v != "" {
		return v
	}
	for _, s := range settings {
		if s.name == name {
			return s.def
		}
	}
	panic("unknown setting " + name)
}

func mustConfig(t *testing.T, svc string, env map[string]string) config {
	t.Helper()
	cfg, err := loadConfig(func(name string) string { return env[name] })
	if err != nil {
		t.Fatalf("service %s: claimd would refuse its environment: %v", svc, err)
	}
	return cfg
}

func addrPort(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 {
		t.Fatalf("%s %q: want a fixed numeric port", what, addr)
	}
	return n
}

// checkAddrReachable: a listener on a loopback address inside a container
// cannot be reached from the host's published port nor from Prometheus.
func checkAddrReachable(t *testing.T, svc, name, addr string) {
	t.Helper()
	host, _, _ := net.SplitHostPort(addr)
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("service %s: %s=%q listens on %s only; other containers and the published port cannot reach it (use :PORT)", svc, name, addr, host)
	}
}

// checkPublished: svc publishes container port target (on host port
// published, unless that is 0) and only on 127.0.0.1.
func checkPublished(t *testing.T, c *compose, svc string, target, published int) {
	t.Helper()
	var found bool
	for _, p := range c.ports(t, svc) {
		if p.target != target {
			t.Errorf("service %s publishes container port %d, but it listens on %d", svc, p.target, target)
			continue
		}
		found = true
		if published != 0 && p.published != strconv.Itoa(published) {
			t.Errorf("service %s publishes %d on host port %q, want %d", svc, target, p.published, published)
		}
		if p.hostIP != "127.0.0.1" {
			t.Errorf("service %s publishes %d on every interface; bind it to 127.0.0.1 (development credentials)", svc, target)
		}
	}
	if !found {
		t.Errorf("service %s does not publish its port %d", svc, target)
	}
}

// checkURL: raw is a URL of scheme to compose service host on port, with
// these user, password and path ("" means: must have none).
func checkURL(t *testing.T, c *compose, name, raw string, schemes []string, host string, defPort int, user, password, pathWant string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("%s %q: %v", name, raw, err)
		return
	}
	if !slices.Contains(schemes, u.Scheme) {
		t.Errorf("%s %q: scheme %q, want %v", name, raw, u.Scheme, schemes)
	}
	if _, ok := c.Services[u.Hostname()]; !ok {
		t.Errorf("%s %q: host %q is not a compose service", name, raw, u.Hostname())
	} else if u.Hostname() != host {
		t.Errorf("%s %q: host %q, want the %s service", name, raw, u.Hostname(), host)
	}
	if p := cmp.Or(u.Port(), strconv.Itoa(defPort)); p != strconv.Itoa(defPort) {
		t.Errorf("%s %q: port %s, the %s service listens on %d", name, raw, p, host, defPort)
	}
	gotPass, _ := u.User.Password()
	if u.User.Username() != user || gotPass != password {
		t.Errorf("%s %q: user %q password %q, want %q %q (the %s service's)", name, raw, u.User.Username(), gotPass, user, password, host)
	}
	if name == "REDIS_URL" {
		if p := strings.Trim(u.Path, "/"); p != "" {
			if _, err := strconv.Atoi(p); err != nil {
				t.Errorf("%s %q: database %q is not a number", name, raw, p)
			}
		}
	} else if u.Path != pathWant {
		t.Errorf("%s %q: database %q, the %s service creates %q", name, raw, strings.TrimPrefix(u.Path, "/"), host, strings.TrimPrefix(pathWant, "/"))
	}
}

// --- health checks -------------------------------------------------------

// argv is the command a healthcheck runs: CMD's arguments, or CMD-SHELL's
// script split into words (enough for the simple scripts used here).
func (h *healthcheck) argv(t *testing.T, svc string) (argv []string, shell bool) {
	t.Helper()
	test := h.Test.list()
	if !h.Test.isList {
		return strings.Fields(strings.Join(test, " ")), true
	}
	if len(test) == 0 {
		t.Errorf("service %s: empty healthcheck test", svc)
		return nil, false
	}
	switch test[0] {
	case "CMD":
		return test[1:], false
	case "CMD-SHELL":
		return strings.Fields(strings.Join(test[1:], " ")), true
	case "NONE":
		t.Errorf("service %s: healthcheck test NONE disables it", svc)
		return nil, false
	}
	t.Errorf("service %s: healthcheck test must start with CMD or CMD-SHELL, not %q", svc, test[0])
	return nil, false
}

// checkHTTPHealthcheck: wget or curl of http://127.0.0.1:port/path (or
// localhost) with one of the paths.
func checkHTTPHealthcheck(t *testing.T, svc string, argv []string, port int, paths ...string) {
	t.Helper()
	line := strings.Join(argv, " ")
	if len(argv) == 0 || (argv[0] != "wget" && argv[0] != "curl") {
		t.Errorf("service %s: healthcheck %q, want wget (its image has it) of %v", svc, line, paths)
		return
	}
	if argv[0] == "curl" && !slices.Contains(argv, "-f") && !slices.Contains(argv, "--fail") {
		t.Errorf("service %s: healthcheck %q: curl without -f succeeds on HTTP errors", svc, line)
	}
	for _, a := range argv {
		if !strings.HasPrefix(a, "http://") {
			continue
		}
		u, err := url.Parse(a)
		if err != nil {
			t.Errorf("service %s: healthcheck URL %q: %v", svc, a, err)
			return
		}
		if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" {
			t.Errorf("service %s: healthcheck URL %q should hit the container itself (127.0.0.1)", svc, a)
		}
		if u.Port() != strconv.Itoa(port) {
			t.Errorf("service %s: healthcheck URL %q, but it listens on port %d", svc, a, port)
		}
		if !slices.Contains(paths, u.Path) {
			t.Errorf("service %s: healthcheck URL %q, want path %v", svc, a, paths)
		}
		return
	}
	t.Errorf("service %s: healthcheck %q has no http:// URL", svc, line)
}

func listenPort(svc string, httpPort, workerPort int) int {
	if svc == workerService {
		return workerPort
	}
	return httpPort
}

// checkClaimdHealthcheck: the final image must have the tool, and the URL
// must be claimd's /healthz or /readyz.
func checkClaimdHealthcheck(t *testing.T, svc string, hc *healthcheck, df *dockerfile, port int) {
	t.Helper()
	argv, shell := hc.argv(t, svc)
	minimal := strings.Contains(df.base, "distroless") || df.base == "scratch"
	if minimal && (shell || len(argv) == 0 || argv[0] != "/claimd") {
		t.Errorf("service %s: healthcheck %q cannot run: the image (%s) has no shell, wget or curl", svc, strings.Join(hc.Test.list(), " "), df.base)
		return
	}
	if len(argv) > 0 && argv[0] == "/claimd" {
		t.Errorf("service %s: healthcheck %q: claimd has no health-check subcommand", svc, strings.Join(argv, " "))
		return
	}
	checkHTTPHealthcheck(t, svc, argv, port, "/healthz", "/readyz")
}

// --- mounted files -------------------------------------------------------

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
	hostPath string
}

// loadPrometheusConfig reads the prometheus.yml the prometheus service
// loads: --config.file (the image's default unless command sets it), found
// in the repository through the service's bind mounts.
func loadPrometheusConfig(t *testing.T, c *compose) *prometheusConfig {
	t.Helper()
	file := cmp.Or(flagValue(c.Services["prometheus"].Command.list(), "--config.file"), "/etc/prometheus/prometheus.yml")
	host := c.hostPath(t, "prometheus", file)
	if host == "" {
		t.Fatalf("service prometheus: its configuration %s is not mounted from the repository", file)
	}
	b, err := os.ReadFile(host)
	if err != nil {
		t.Fatalf("service prometheus loads %s: %v", file, err)
	}
	var cfg prometheusConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	cfg.hostPath = host
	return &cfg
}

// checkPrometheusFiles: the rule files prometheus.yml names are in the
// mounted directory, and the mount is read-only.
func checkPrometheusFiles(t *testing.T, c *compose) {
	t.Helper()
	cfg := loadPrometheusConfig(t, c)
	for _, rf := range cfg.RuleFiles {
		pattern := rf
		if !filepath.IsAbs(rf) {
			pattern = filepath.Join(filepath.Dir(cfg.hostPath), rf)
		} else if pattern = c.hostPath(t, "prometheus", rf); pattern == "" {
			t.Errorf("prometheus.yml rule_files %q: not mounted from the repository", rf)
			continue
		}
		if matches, _ := filepath.Glob(pattern); len(matches) == 0 {
			t.Errorf("prometheus.yml rule_files %q: no such file in the repository (%s)", rf, pattern)
		}
	}
	for _, m := range c.mounts(t, "prometheus") {
		if m.kind == "bind" && !m.readOnly {
			t.Errorf("service prometheus mounts %s read-write; make it :ro", m.source)
		}
	}
}

// checkGrafanaProvisioning: the datasource points at the prometheus service,
// and every dashboard provider's path is a mounted repository directory.
func checkGrafanaProvisioning(t *testing.T, c *compose, promPort int) {
	t.Helper()
	dir := cmp.Or(c.envNoT("grafana")["GF_PATHS_PROVISIONING"], "/etc/grafana/provisioning")
	host := c.hostPath(t, "grafana", dir)
	if host == "" {
		t.Errorf("service grafana: %s is not mounted from the repository", dir)
		return
	}
	var sawDatasource, sawProvider bool
	dsFiles, _ := filepath.Glob(filepath.Join(host, "datasources", "*.y*ml"))
	for _, f := range dsFiles {
		var ds struct {
			Datasources []struct {
				Name, Type, URL, UID string
				IsDefault            bool `yaml:"isDefault"`
			} `yaml:"datasources"`
		}
		mustYAML(t, f, &ds)
		for _, d := range ds.Datasources {
			if d.Type != "prometheus" {
				continue
			}
			sawDatasource = true
			u, err := url.Parse(d.URL)
			if err != nil || u.Hostname() != "prometheus" || u.Port() != strconv.Itoa(promPort) {
				t.Errorf("%s: datasource %s url %q, want http://prometheus:%d", f, d.Name, d.URL, promPort)
			}
			if d.UID != "prometheus" {
				t.Errorf("%s: datasource %s uid %q, want prometheus (dashboards refer to it by uid)", f, d.Name, d.UID)
			}
		}
	}
	if !sawDatasource {
		t.Errorf("no Prometheus datasource under %s", filepath.Join(host, "datasources"))
	}
	provFiles, _ := filepath.Glob(filepath.Join(host, "dashboards", "*.y*ml"))
	for _, f := range provFiles {
		var p struct {
			Providers []struct {
				Name, Type string
				Options    struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		mustYAML(t, f, &p)
		for _, pr := range p.Providers {
			sawProvider = true
			if pr.Type != "file" {
				continue
			}
			h := c.hostPath(t, "grafana", pr.Options.Path)
			if h == "" {
				t.Errorf("%s: provider %s reads %s, which is not mounted from the repository", f, pr.Name, pr.Options.Path)
			} else if fi, err := os.Stat(h); err != nil || !fi.IsDir() {
				t.Errorf("%s: provider %s reads %s, whose repository directory %s does not exist", f, pr.Name, pr.Options.Path, h)
			}
		}
	}
	if !sawProvider {
		t.Errorf("no dashboard provider under %s", filepath.Join(host, "dashboards"))
	}
}

func mustYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
