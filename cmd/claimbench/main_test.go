package main

import (
	"os"
	"testing"
)

// TestMain lets the suite's tests run claimbench as a process of its own
// (benchApart re-executes its own binary, here the test binary).
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
