package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Tool returns the path of the program name (looked up in PATH) that a test
// runs. When it is missing, the test fails if CI is set, so that a CI run
// never passes without the checks it makes, and skips otherwise, saying how
// to get it: .ci/ensure-test-tools (which make test runs) installs it, from
// what installHint names, e.g. "Debian package prometheus".
func Tool(tb testing.TB, name, installHint string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s is not installed (%v); CI must have it: .ci/ensure-test-tools installs it (%s)", name, err, installHint)
	}
	tb.Skipf("%s is not installed (%v); .ci/ensure-test-tools (run by make test) installs it (%s)", name, err, installHint)
	return ""
}
