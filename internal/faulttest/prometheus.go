package faulttest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/testenv"
)

// PrometheusServer is a Prometheus server of the test's own (Debian's
// prometheus binary) on a free port, with its data in a temporary
// directory, scraping the targets it was started with every second.
type PrometheusServer struct {
	t       testing.TB
	addr    string
	logPath string
	child   *proc.Process
	api     promv1.API // client_golang's client of its HTTP API
}

// ScrapeJob is one scrape_configs entry: a job name and its targets
// (host:port), scraped at metrics_path.
type ScrapeJob struct {
	Name        string
	MetricsPath string
	Targets     []string
}

// prometheusStartAttempts bounds the starts on a port another process took
// between FreePort and Prometheus binding it.
const prometheusStartAttempts = 3

// StartPrometheus starts bin (the prometheus binary) with a configuration
// that scrapes jobs every second and waits until it is ready. It is stopped
// and its data deleted when the test ends; its log is printed if the test
// failed.
func StartPrometheus(t testing.TB, bin string, jobs []ScrapeJob) *PrometheusServer {
	t.Helper()
	return startPrometheus(t, bin, jobs, testenv.FreePort)
}

// startPrometheus is StartPrometheus listening on a port from freePort. A
// port found free may be taken by another process before Prometheus binds
// it: when Prometheus exits during start with "address already in use" in
// its log, it is started again on another port, up to
// prometheusStartAttempts times in all.
func startPrometheus(t testing.TB, bin string, jobs []ScrapeJob, freePort func(testing.TB) int) *PrometheusServer {
	t.Helper()
	dir := t.TempDir()
	type staticConfig struct {
		Targets []string `yaml:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `yaml:"job_name"`
		MetricsPath   string         `yaml:"metrics_path,omitempty"`
		StaticConfigs []staticConfig `yaml:"static_configs"`
	}
	cfg := struct {
		Global        map[string]string `yaml:"global"`
		ScrapeConfigs []scrapeConfig    `yaml:"scrape_configs"`
	}{Global: map[string]string{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}}
	for _, j := range jobs {
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, scrapeConfig{JobName: j.Name, MetricsPath: j.MetricsPath,
			StaticConfigs: []staticConfig{{Targets: j.Targets}}})
	}
	raw, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	configPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(configPath, raw, 0o644))

	p := &PrometheusServer{t: t, logPath: filepath.Join(dir, "prometheus.log")}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if p.child != nil {
			p.child.Terminate(syscall.SIGTERM, 10*time.Second)
		}
		if t.Failed() {
			dumpFile(t, "prometheus log", p.logPath)
		}
	})
	for attempt := 1; ; attempt++ {
		err := p.start(bin, configPath, filepath.Join(dir, "data"), "127.0.0.1:"+strconv.Itoa(freePort(t)))
		if err == nil {
			return p
		}
		if !errors.Is(err, errPortTaken) || attempt == prometheusStartAttempts {
			t.Fatalf("prometheus on %s (start %d of at most %d): %v", p.addr, attempt, prometheusStartAttempts, err)
		}
		t.Logf("prometheus: %s was taken before it could listen there; starting it on another port", p.addr)
	}
}

// errPortTaken is a start that failed because the port was in use.
var errPortTaken = errors.New("address already in use")

// start starts Prometheus listening on addr, with an empty data directory,
// and waits until it is ready. It returns errPortTaken (wrapped) if
// Prometheus exited because addr was in use.
func (p *PrometheusServer) start(bin, configPath, dataDir, addr string) error {
	apiClient, err := promapi.NewClient(promapi.Config{Address: "http://" + addr})
	if err != nil {
		return err
	}
	p.addr, p.child, p.api = addr, nil, promv1.NewAPI(apiClient)
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		_ = logFile.Close()
		return err
	}
	fmt.Fprintf(logFile, "=== faulttest: starting prometheus on %s at %s\n", addr, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+dataDir,
		"--web.listen-address="+addr,
		"--log.level=info")
	cmd.Dir = filepath.Dir(configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	child, err := proc.Spawn(cmd)
	_ = logFile.Close() // the child has its own
	if err != nil {
		return err
	}
	p.child = child

	client := &http.Client{Timeout: time.Second}
	return poll(30*time.Second, func() error {
		if !child.Running() {
			log, _ := os.ReadFile(p.logPath)
			if int64(len(log)) >= logStart && strings.Contains(string(log[logStart:]), "address already in use") {
				return proc.Stop(fmt.Errorf("prometheus exited during start: %w", errPortTaken))
			}
			return proc.Stop(fmt.Errorf("prometheus exited during start (%v); see its log", child.Err()))
		}
		resp, err := client.Get(p.URL() + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready answered %d", resp.StatusCode)
		}
		return nil
	})
}

// URL is the server's http:// base URL.
func (p *PrometheusServer) URL() string { return "http://" + p.addr }

// PromSample is one sample of an instant query's result.
type PromSample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates expr now, through the HTTP API (/api/v1/query), and
// returns the samples of the result: a vector's, or a scalar as one sample.
func (p *PrometheusServer) Query(expr string) ([]PromSample, error) {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	result, _, _, err := p.api.Query(ctx, expr, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	switch result := result.(type) {
	case model.Vector:
		out := make([]PromSample, 0, len(result))
		for _, s := range result {
			metric := make(map[string]string, len(s.Metric))
			for name, value := range s.Metric {
				metric[string(name)] = string(value)
			}
			out = append(out, PromSample{Metric: metric, Value: float64(s.Value)})
		}
		return out, nil
	case *model.Scalar:
		return []PromSample{{Value: float64(result.Value)}}, nil
	}
	return nil, fmt.Errorf("query %s: result type %s", expr, result.Type())
}

// LabelValues lists the values of label over the series match selects
// (/api/v1/label/<label>/values), as Grafana's label_values(match, label).
func (p *PrometheusServer) LabelValues(label, match string) ([]string, error) {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	values, _, _, err := p.api.LabelValues(ctx, label, []string{match}, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out, nil
}
