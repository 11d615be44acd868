package main

// Docker cannot run on the machines this repository is tested on, so this
// test checks docker-compose.yml, the Dockerfile and the files they mount
// against the service itself: the variables set are the ones claimd reads
// (settings) and loadConfig accepts them, serve and worker agree, the URLs
// name the compose services with their credentials, published ports and
// Prometheus's scrape targets are the addresses claimd listens on, health
// checks use a tool the image has and hit a real endpoint, and every mounted
// path exists. It needs no service and runs in make test.

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.yaml.in/yaml/v3"
)

// Service names the rest of the repository depends on: prometheus.yml
// scrapes claimd:8000 and worker:8001 by these names.
const (
	apiService    = "claimd"
	workerService = "worker"
)

// runtimeVariables are read by the Go runtime (and tuneGC), not by loadConfig;
// the README documents them beside the settings.
var runtimeVariables = []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"}

// sharedSettings must have the same effective value in serve and worker: the
// same database, Redis keys, queue (and its arguments, fixed by whichever
// declares the queue first), status lifetime and validation rules.
var sharedSettings = []string{
	"DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "RABBITMQ_URL", "RABBITMQ_QUEUE",
	"QUEUE_DELIVERY_LIMIT", "QUEUED_STATUS_TTL", "IDEMPOTENCY_TTL", "VALIDATE_NPI_CHECKSUM",
}

// dataDirs: the services whose state must survive `docker compose down`, and
// where their images keep it.
var dataDirs = map[string]string{
	"postgres":   "/var/lib/postgresql/data",
	"rabbitmq":   "/var/lib/rabbitmq",
	"prometheus": "/prometheus",
	"grafana":    "/var/lib/grafana",
}

func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	c := loadCompose(t, root)
	df := loadDockerfile(t, filepath.Join(root, "Dockerfile"))

	for _, name := range []string{apiService, workerService, "postgres", "redis", "rabbitmq", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no service %q", name)
		}
	}
	api, worker := c.Services[apiService], c.Services[workerService]
	apiEnv, workerEnv := c.env(t, apiService), c.env(t, workerService)
	apiCfg := mustConfig(t, apiService, apiEnv)
	mustConfig(t, workerService, workerEnv) // the worker reads the same settings: all must be valid
	httpPort := addrPort(t, "HTTP_ADDR", effective(apiEnv, "HTTP_ADDR"))
	workerPort := addrPort(t, "WORKER_ADDR", effective(workerEnv, "WORKER_ADDR"))

	t.Run("1_variables_are_settings", func(t *testing.T) {
		for _, svc := range []string{apiService, workerService} {
			for name := range c.env(t, svc) {
				if !isSetting(name) && !slices.Contains(runtimeVariables, name) {
					t.Errorf("service %s sets %s, which claimd does not read (not in settings, cmd/claimd/config.go)", svc, name)
				}
			}
		}
	})

	t.Run("2_serve_async_and_agreement", func(t *testing.T) {
		if !apiCfg.Async {
			t.Errorf("service %s: INGEST_MODE is %q, want async (the worker only stores what async mode queues)",
				apiService, effective(apiEnv, "INGEST_MODE"))
		}
		for _, name := range sharedSettings {
			if a, w := effective(apiEnv, name), effective(workerEnv, name); a != w {
				t.Errorf("%s differs: %s has %q, %s has %q", name, apiService, a, workerService, w)
			}
		}
		if got := c.command(t, apiService, df); got != "serve" {
			t.Errorf("service %s runs `claimd %s`, want `claimd serve`", apiService, got)
		}
		if got := c.command(t, workerService, df); got != "worker" {
			t.Errorf("service %s runs `claimd %s`, want `claimd worker`", workerService, got)
		}
	})

	t.Run("3_urls_name_services_and_credentials", func(t *testing.T) {
		pg := c.env(t, "postgres")
		pgUser := orDefault(pg["POSTGRES_USER"], "postgres")
		checkURL(t, c, "DATABASE_URL", apiCfg.DatabaseURL, []string{"postgres", "postgresql"}, "postgres", 5432,
			pgUser, pg["POSTGRES_PASSWORD"], "/"+orDefault(pg["POSTGRES_DB"], pgUser))
		if pg["POSTGRES_PASSWORD"] == "" {
			t.Errorf("service postgres: POSTGRES_PASSWORD is not set; the postgres image refuses to initialise without it")
		}

		rd := c.Services["redis"]
		if cmd := strings.Join(rd.Command.list(), " "); strings.Contains(cmd, "requirepass") {
			t.Errorf("service redis sets requirepass; this test does not check REDIS_URL's password against it: teach it")
		}
		checkURL(t, c, "REDIS_URL", apiCfg.RedisURL, []string{"redis"}, "redis", 6379, "", "", "")

		rmq := c.env(t, "rabbitmq")
		uri, err := amqp.ParseURI(apiCfg.Queue.URL)
		if err != nil {
			t.Fatalf("RABBITMQ_URL %q: %v", apiCfg.Queue.URL, err)
		}
		wantUser, wantPass := orDefault(rmq["RABBITMQ_DEFAULT_USER"], "guest"), orDefault(rmq["RABBITMQ_DEFAULT_PASS"], "guest")
		switch {
		case uri.Scheme != "amqp":
			t.Errorf("RABBITMQ_URL %q: scheme %q, want amqp (the broker here has no TLS listener)", apiCfg.Queue.URL, uri.Scheme)
		case uri.Host != "rabbitmq" || uri.Port != 5672:
			t.Errorf("RABBITMQ_URL %q: host %s:%d, want rabbitmq:5672", apiCfg.Queue.URL, uri.Host, uri.Port)
		case uri.Username == "guest":
			t.Errorf("RABBITMQ_URL %q uses guest, which RabbitMQ only accepts from localhost: set RABBITMQ_DEFAULT_USER/PASS on rabbitmq and use them", apiCfg.Queue.URL)
		case uri.Username != wantUser || uri.Password != wantPass:
			t.Errorf("RABBITMQ_URL %q: user %q password %q, rabbitmq service has RABBITMQ_DEFAULT_USER %q RABBITMQ_DEFAULT_PASS %q",
				apiCfg.Queue.URL, uri.Username, uri.Password, wantUser, wantPass)
		case uri.Vhost != orDefault(rmq["RABBITMQ_DEFAULT_VHOST"], "/"):
			t.Errorf("RABBITMQ_URL %q: vhost %q, rabbitmq service's is %q", apiCfg.Queue.URL, uri.Vhost, orDefault(rmq["RABBITMQ_DEFAULT_VHOST"], "/"))
		}

		// claimd and worker start only once the services they use are healthy.
		for _, svc := range []string{apiService, workerService} {
			deps := c.dependsOn(t, svc)
			for _, dep := range []string{"postgres", "redis", "rabbitmq"} {
				if deps[dep] != "service_healthy" {
					t.Errorf("service %s: depends_on %s is %q, want condition service_healthy", svc, dep, deps[dep])
				}
			}
		}
	})

	t.Run("4_ports_and_scrape_targets", func(t *testing.T) {
		checkAddrReachable(t, apiService, "HTTP_ADDR", effective(apiEnv, "HTTP_ADDR"))
		checkAddrReachable(t, workerService, "WORKER_ADDR", effective(workerEnv, "WORKER_ADDR"))
		checkPublished(t, c, apiService, httpPort, httpPort)
		checkPublished(t, c, workerService, workerPort, workerPort)
		checkPublished(t, c, "prometheus", prometheusPort(t, c), 0)
		checkPublished(t, c, "grafana", grafanaPort(c), 0)
		for _, svc := range []string{"postgres", "redis", "rabbitmq"} {
			for _, p := range c.ports(t, svc) {
				if p.hostIP != "127.0.0.1" {
					t.Errorf("service %s publishes %d with development credentials on every interface; bind it to 127.0.0.1", svc, p.target)
				}
			}
		}

		listens := map[string]int{apiService: httpPort, workerService: workerPort}
		prom := loadPrometheusConfig(t, c)
		found := map[string]bool{}
		for _, sc := range prom.ScrapeConfigs {
			for _, st := range sc.StaticConfigs {
				for _, target := range st.Targets {
					host, portText, err := net.SplitHostPort(target)
					if err != nil {
						t.Errorf("prometheus.yml job %s: target %q: %v", sc.JobName, target, err)
						continue
					}
					port, _ := strconv.Atoi(portText)
					if want, ok := listens[host]; ok {
						found[host] = true
						if port != want {
							t.Errorf("prometheus.yml job %s scrapes %s, but %s listens on port %d", sc.JobName, target, host, want)
						}
						if p := orDefault(sc.MetricsPath, "/metrics"); p != "/metrics" {
							t.Errorf("prometheus.yml job %s: metrics_path %q, claimd serves /metrics", sc.JobName, p)
						}
						if s := orDefault(sc.Scheme, "http"); s != "http" {
							t.Errorf("prometheus.yml job %s: scheme %q, claimd serves plain http", sc.JobName, s)
						}
					} else if _, ok := c.Services[host]; !ok && host != "localhost" && host != "127.0.0.1" {
						t.Errorf("prometheus.yml job %s scrapes %s: %s is not a compose service", sc.JobName, target, host)
					}
				}
			}
		}
		for host := range listens {
			if !found[host] {
				t.Errorf("prometheus.yml scrapes no %s:%d target", host, listens[host])
			}
		}
	})

	t.Run("5_healthchecks", func(t *testing.T) {
		names := c.serviceNames()
		for _, svc := range names {
			hc := c.Services[svc].Healthcheck
			if svc == apiService || svc == workerService {
				if hc != nil && !hc.Disable {
					checkClaimdHealthcheck(t, svc, hc, df, listenPort(svc, httpPort, workerPort))
				}
				continue
			}
			if hc == nil || hc.Disable {
				t.Errorf("service %s has no healthcheck", svc)
				continue
			}
			argv, _ := hc.argv(t, svc)
			line := strings.Join(argv, " ")
			switch svc {
			case "postgres":
				user := orDefault(c.env(t, "postgres")["POSTGRES_USER"], "postgres")
				if len(argv) == 0 || argv[0] != "pg_isready" || !hasFlagValue(argv, "-U", user) ||
					!(hasFlagValue(argv, "-h", "127.0.0.1") || hasFlagValue(argv, "-h", "localhost")) {
					t.Errorf("service postgres: healthcheck %q, want pg_isready -h 127.0.0.1 -U %s (over TCP: the first-start temporary server listens on the socket only)", line, user)
				}
			case "redis":
				if len(argv) < 2 || argv[0] != "redis-cli" || !slices.Contains(argv, "ping") {
					t.Errorf("service redis: healthcheck %q, want redis-cli ping", line)
				}
			case "rabbitmq":
				if len(argv) < 2 || argv[0] != "rabbitmq-diagnostics" ||
					!slices.ContainsFunc(argv, func(a string) bool {
						return slices.Contains([]string{"ping", "check_port_connectivity", "check_running", "status"}, a)
					}) {
					t.Errorf("service rabbitmq: healthcheck %q, want rabbitmq-diagnostics ping or check_port_connectivity", line)
				}
			case "prometheus":
				checkHTTPHealthcheck(t, svc, argv, prometheusPort(t, c), "/-/healthy", "/-/ready")
			case "grafana":
				checkHTTPHealthcheck(t, svc, argv, grafanaPort(c), "/api/health")
			default:
				t.Errorf("service %s: this test knows no healthcheck for it; add a case", svc)
			}
		}
		// A dependency waited on as healthy must have a healthcheck.
		for _, svc := range names {
			for dep, cond := range c.dependsOn(t, svc) {
				d, ok := c.Services[dep]
				if !ok {
					t.Errorf("service %s depends on %s, which is not a service", svc, dep)
				} else if cond == "service_healthy" && (d.Healthcheck == nil || d.Healthcheck.Disable) {
					t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", svc, dep, dep)
				}
			}
		}
		for _, svc := range names {
			if p := c.Services[svc].Restart; p != "unless-stopped" && p != "always" && p != "on-failure" {
				t.Errorf("service %s: restart %q, want unless-stopped", svc, p)
			}
		}
	})

	t.Run("6_mounts_exist_and_volumes_declared", func(t *testing.T) {
		used := map[string]bool{}
		for _, svc := range c.serviceNames() {
			for _, m := range c.mounts(t, svc) {
				switch m.kind {
				case "bind":
					if filepath.IsAbs(m.source) {
						t.Errorf("service %s mounts %s: an absolute host path, not part of the repository", svc, m.source)
						continue
					}
					host := filepath.Join(root, m.source)
					if !strings.HasPrefix(host, root+string(filepath.Separator)) && host != root {
						t.Errorf("service %s mounts %s, outside the repository", svc, m.source)
					} else if _, err := os.Stat(host); err != nil {
						t.Errorf("service %s mounts %s, which does not exist in the repository: %v", svc, m.source, err)
					}
				case "volume":
					used[m.source] = true
					if _, ok := c.Volumes[m.source]; !ok {
						t.Errorf("service %s uses volume %q, not declared under volumes:", svc, m.source)
					}
				}
			}
		}
		for v := range c.Volumes {
			if !used[v] {
				t.Errorf("volume %q is declared but no service uses it", v)
			}
		}
		for svc, dir := range dataDirs {
			if m, ok := c.mountAt(t, svc, dir); !ok || m.kind != "volume" {
				t.Errorf("service %s: %s is not on a named volume; its data would not survive re-creation", svc, dir)
			}
		}
		if h := c.Services["rabbitmq"].Hostname; h == "" {
			t.Errorf("service rabbitmq has no fixed hostname: its node name, and so its data directory, would change with each container")
		}

		// What the mounted directories must hold.
		checkPrometheusFiles(t, c)
		checkGrafanaProvisioning(t, c, prometheusPort(t, c))

		for _, svc := range []string{apiService, workerService} {
			ctx, dockerfile := c.Services[svc].Build.contextAndDockerfile()
			if ctx != "." || dockerfile != "Dockerfile" {
				t.Errorf("service %s: build context %q dockerfile %q, want the repository's Dockerfile (. and Dockerfile)", svc, ctx, dockerfile)
			}
		}
		if api.Image != worker.Image {
			t.Errorf("services %s and %s use different images (%q, %q): they must run the same build", apiService, workerService, api.Image, worker.Image)
		}
	})

	t.Run("7_dockerfile", func(t *testing.T) {
		want := []int{httpPort, workerPort}
		sort.Ints(want)
		if !slices.Equal(df.expose, want) {
			t.Errorf("Dockerfile EXPOSE %v, want %v (HTTP_ADDR and WORKER_ADDR)", df.expose, want)
		}
		for _, svc := range []string{apiService, workerService} {
			for _, p := range c.ports(t, svc) {
				if !slices.Contains(df.expose, p.target) {
					t.Errorf("service %s publishes container port %d, which the Dockerfile does not EXPOSE", svc, p.target)
				}
			}
		}
		if df.buildOutput == "" {
			t.Errorf("Dockerfile: no `go build ... -o FILE ./cmd/claimd` found")
		} else if !df.copiesBinary {
			t.Errorf("Dockerfile: the final stage does not COPY --from=<build stage> %s /claimd", df.buildOutput)
		}
		if !slices.Equal(df.entrypoint, []string{"/claimd"}) {
			t.Errorf("Dockerfile: ENTRYPOINT %q, want [\"/claimd\"]", df.entrypoint)
		}
		if !slices.Equal(df.cmd, []string{"serve"}) {
			t.Errorf("Dockerfile: CMD %q, want [\"serve\"]", df.cmd)
		}
		if name, _, _ := strings.Cut(df.user, ":"); name == "" || name == "root" || name == "0" {
			t.Errorf("Dockerfile: the final stage runs as %q; want an explicit non-root USER", orDefault(df.user, "the base image's user"))
		}
		if !regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(df.text) {
			t.Errorf("Dockerfile: CGO_ENABLED=0 not set; the final image has no C library")
		}
		checkDockerignore(t, root)
	})
}

// --- docker-compose.yml -----------------------------------------------------

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
	return path.Clean(orDefault(b.context, ".")), orDefault(b.dockerfile, "Dockerfile")
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
			deps[d] = orDefault(v.Condition, "service_started")
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

// --- claimd's side --------------------------------------------------------

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

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
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
	if p := orDefault(u.Port(), strconv.Itoa(defPort)); p != strconv.Itoa(defPort) {
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
	file := orDefault(flagValue(c.Services["prometheus"].Command.list(), "--config.file"), "/etc/prometheus/prometheus.yml")
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
	dir := orDefault(c.envNoT("grafana")["GF_PATHS_PROVISIONING"], "/etc/grafana/provisioning")
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

// --- Dockerfile ------------------------------------------------------------

type dockerfile struct {
	text         string
	base         string // the final stage's FROM image
	user         string // the final stage's last USER
	expose       []int  // the final stage's EXPOSE ports, sorted
	entrypoint   []string
	cmd          []string
	buildOutput  string // -o of the go build of ./cmd/claimd
	copiesBinary bool   // the final stage copies it to /claimd
}

// loadDockerfile reads the instructions that matter here. Line continuations
// and comments are handled; ENTRYPOINT and CMD must be in JSON (exec) form.
func loadDockerfile(t *testing.T, file string) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	df := &dockerfile{text: string(b)}
	var instructions []string
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		instructions = append(instructions, cur.String())
		cur.Reset()
	}
	var (
		stage      string // current stage's name
		buildStage string
		finalFrom  int
	)
	for i, ins := range instructions {
		if kw, _, _ := strings.Cut(ins, " "); strings.EqualFold(kw, "FROM") {
			finalFrom = i
		}
	}
	goBuild := regexp.MustCompile(`\bgo build\b.*\s-o\s+(\S+).*\s\./cmd/claimd\s*$`)
	for i, ins := range instructions {
		kw, rest, _ := strings.Cut(ins, " ")
		kw, rest = strings.ToUpper(kw), strings.TrimSpace(rest)
		final := i >= finalFrom
		switch kw {
		case "FROM":
			f := strings.Fields(rest)
			stage = ""
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stage = f[2]
			}
			if final {
				df.base = f[0]
			}
		case "RUN":
			if m := goBuild.FindStringSubmatch(rest); m != nil {
				df.buildOutput, buildStage = m[1], stage
			}
		case "COPY":
			f := strings.Fields(rest)
			if final && buildStage != "" && len(f) == 3 && f[0] == "--from="+buildStage &&
				path.Clean(f[1]) == path.Clean(df.buildOutput) && f[2] == "/claimd" {
				df.copiesBinary = true
			}
		case "USER":
			if final {
				df.user = rest
			}
		case "EXPOSE":
			if final {
				for _, p := range strings.Fields(rest) {
					n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
					if err != nil {
						t.Errorf("Dockerfile: EXPOSE %q", p)
						continue
					}
					df.expose = append(df.expose, n)
				}
			}
		case "ENTRYPOINT", "CMD":
			if !final {
				continue
			}
			var args []string
			if err := yaml.Unmarshal([]byte(rest), &args); err != nil || !strings.HasPrefix(rest, "[") {
				t.Errorf("Dockerfile: %s %s: want the JSON (exec) form: a distroless image has no shell", kw, rest)
			}
			if kw == "ENTRYPOINT" {
				df.entrypoint = args
			} else {
				df.cmd = args
			}
		}
	}
	sort.Ints(df.expose)
	return df
}

// checkDockerignore: the build context keeps what `go build ./cmd/claimd`
// needs, the embedded migrations included. Patterns are matched as Docker
// does for plain patterns (a match on a directory drops what is under it;
// the last matching line wins, ! re-includes); ** is not modeled.
func checkDockerignore(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Errorf(".dockerignore: %v (without it the whole repository, .git and binaries included, is sent to the builder)", err)
		return
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if strings.Contains(line, "**") {
				t.Errorf(".dockerignore: %q: ** is not modeled by this test", line)
			}
			patterns = append(patterns, line)
		}
	}
	excluded := func(p string) (bool, string) {
		out, by := false, ""
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			clean := path.Clean(strings.TrimPrefix(strings.TrimPrefix(pat, "!"), "/"))
			for q := p; q != "."; q = path.Dir(q) {
				if ok, _ := path.Match(clean, q); ok {
					out, by = !neg, pat
					break
				}
			}
		}
		return out, by
	}
	need := []string{"go.mod", "go.sum", "cmd/claimd/main.go", "cmd/claimd/config.go", "migrations/embed.go"}
	for _, dir := range []string{"cmd/claimd", "internal", "migrations"} {
		_ = filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
				rel, _ := filepath.Rel(root, p)
				need = append(need, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	for _, p := range need {
		if out, by := excluded(p); out {
			t.Errorf(".dockerignore %q leaves %s out of the build context; the image build needs it", by, p)
		}
	}
	for _, p := range []string{".git/HEAD", "bin/claimd"} {
		if out, _ := excluded(p); !out {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}
