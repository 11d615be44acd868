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
	"cmp"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Service names the rest of the repository depends on: prometheus.yml
// scrapes claimd:8000 and worker:8001 by these names.
const (
	apiService    = "claimd"
	workerService = "worker"
)

// runtimeVariables are read by the Go runtime (and tuneGC), not by loadConfig;
// docs/operations.md documents them beside the settings.
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
		pgUser := cmp.Or(pg["POSTGRES_USER"], "postgres")
		checkURL(t, c, "DATABASE_URL", apiCfg.DatabaseURL, []string{"postgres", "postgresql"}, "postgres", 5432,
			pgUser, pg["POSTGRES_PASSWORD"], "/"+cmp.Or(pg["POSTGRES_DB"], pgUser))
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
		wantUser, wantPass := cmp.Or(rmq["RABBITMQ_DEFAULT_USER"], "guest"), cmp.Or(rmq["RABBITMQ_DEFAULT_PASS"], "guest")
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
		case uri.Vhost != cmp.Or(rmq["RABBITMQ_DEFAULT_VHOST"], "/"):
			t.Errorf("RABBITMQ_URL %q: vhost %q, rabbitmq service's is %q", apiCfg.Queue.URL, uri.Vhost, cmp.Or(rmq["RABBITMQ_DEFAULT_VHOST"], "/"))
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
						if p := cmp.Or(sc.MetricsPath, "/metrics"); p != "/metrics" {
							t.Errorf("prometheus.yml job %s: metrics_path %q, claimd serves /metrics", sc.JobName, p)
						}
						if s := cmp.Or(sc.Scheme, "http"); s != "http" {
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
				user := cmp.Or(c.env(t, "postgres")["POSTGRES_USER"], "postgres")
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
			t.Errorf("Dockerfile: the final stage runs as %q; want an explicit non-root USER", cmp.Or(df.user, "the base image's user"))
		}
		if !regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(df.text) {
			t.Errorf("Dockerfile: CGO_ENABLED=0 not set; the final image has no C library")
		}
		checkDockerignore(t, root)
	})
}
