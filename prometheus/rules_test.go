// Package prometheus_test checks the Prometheus configuration and alert rules
// in this directory with promtool, and that the claimd metrics they name are
// ones the Go code exports.
package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/claim-process/claim-process/internal/testenv"
)

// promtool checks prometheus.yml and alerts.yml and runs the alerts' unit
// tests. Without promtool the test skips, except in CI, where it fails.
func TestPromtool(t *testing.T) {
	bin := testenv.Tool(t, "promtool", "Debian package prometheus")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"check config", []string{"check", "config", "prometheus.yml"}},
		{"check rules", []string{"check", "rules", "alerts.yml"}},
		{"test rules", []string{"test", "rules", "alerts_test.yml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin, tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
		})
	}
}

// TestMetricNamesExist catches a metric renamed in Go but not in the rules:
// every claimd_* name in alerts.yml and alerts_test.yml (less a histogram's
// _bucket/_sum/_count suffix) must be "claimd_" plus a string literal in the
// non-test Go code of cmd/ or internal/, where the metrics are declared with
// Namespace "claimd".
func TestMetricNamesExist(t *testing.T) {
	literal := regexp.MustCompile(`"([a-z][a-z0-9_]*)"`)
	known := map[string]bool{}
	for _, dir := range []string{"../cmd", "../internal"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
				known["claimd_"+m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	name := regexp.MustCompile(`\bclaimd_[a-z0-9_]+`)
	for _, file := range []string{"alerts.yml", "alerts_test.yml"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, n := range name.FindAllString(string(src), -1) {
			seen[n] = true
		}
		var missing []string
		for n := range seen {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !known[n] && !known[base] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s names metrics the Go code does not export: %s", file, strings.Join(missing, ", "))
		}
	}
}
