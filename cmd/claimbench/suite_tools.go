package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// profile saves a CPU profile of claimd while fn runs, with -pprof-dir.
func (s *suite) profile(ctx context.Context, p *claimdProc, name string, d time.Duration, fn func() error) error {
	if p.pprof == "" || d < 3*time.Second {
		return fn()
	}
	secs := int((d - time.Second).Seconds())
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := filepath.Join(s.cfg.PprofDir, "claimd-"+name+".pprof")
		if err := os.MkdirAll(s.cfg.PprofDir, 0o755); err != nil {
			return
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprof, secs))
		if err != nil {
			s.logf("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = f.ReadFrom(resp.Body)
		s.logf("CPU profile of claimd saved to %s", path)
	}()
	err := fn()
	<-done
	return err
}

// generatorProfile is the flag that saves a CPU profile of the load
// generator (claimbench's own load phase) next to claimd's, with -pprof-dir.
func (s *suite) generatorProfile(name string) []string {
	if s.cfg.PprofDir == "" || os.MkdirAll(s.cfg.PprofDir, 0o755) != nil {
		return nil
	}
	return []string{"-cpuprofile", filepath.Join(s.cfg.PprofDir, "claimbench-"+name+".pprof")}
}

// micro runs the go test micro-benchmarks (Redis against a GROUP BY over
// the lines) and formats them with scripts/bench-report.awk.
func (s *suite) micro(ctx context.Context) {
	s.logf("micro-benchmarks: go test -bench (about 40 s)")
	raw := filepath.Join(s.cfg.LogDir, "bench.txt")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchtime", "2s", "-count", "1", "-v", "./...")
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(raw, out, 0o644)
	if err != nil {
		s.res.MicroNote = fmt.Sprintf("go test -bench exited with %v (raw output in %s); the benchmarks that ran are listed", err, raw)
	}
	awk := exec.CommandContext(ctx, "awk", "-f", "scripts/bench-report.awk", raw)
	table, aerr := awk.Output()
	if aerr != nil {
		s.res.MicroNote = cmp.Or(s.res.MicroNote, fmt.Sprintf("awk -f scripts/bench-report.awk: %v (raw output in %s)", aerr, raw))
		return
	}
	s.res.Micro = string(table)
}
