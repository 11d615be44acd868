package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
)

// The HTTP ceiling: a bare net/http server answering a fixed body, the size
// of claimd's own answers, driven by the same generator in the same run. What
// claimd costs beyond it is what claimd itself does.

// serveBare is `claimbench bare-server`: GET /top-providers and POST /claims
// answered with the bodies in -get-body and -post-body (a POST's body is read
// and dropped), until the process is told to stop.
func serveBare(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("claimbench bare-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	getPath := fs.String("get-body", "", "file answered to GET /top-providers")
	postPath := fs.String("post-body", "", "file answered to POST /claims, 201")
	if err := fs.Parse(args); err != nil {
		return err
	}
	getBody, err := os.ReadFile(*getPath)
	if err != nil {
		return err
	}
	postBody, err := os.ReadFile(*postPath)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /top-providers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(getBody)
	})
	mux.HandleFunc("POST /claims", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(postBody)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareResult is the bare server's figures: throughput and latency in the
// report, the CPU per request of the server (as Claimd) and the generator.
type bareResult struct {
	Top, Post       *Report
	TopCPU, PostCPU *cpuCost
	Skipped         string
}

// bare measures the bare server with claimd's answers as its bodies: the
// lookups as in lookups, the POSTs as in single.
func (s *suite) bare(ctx context.Context, p *claimdProc, st *stageResult) error {
	st.Bare = &bareResult{}
	getBody, postBody, err := s.answersOf(ctx, p)
	if err != nil {
		st.Bare.Skipped = err.Error()
		s.logf("bare HTTP ceiling skipped: %v", err)
		return nil
	}
	dir := s.cfg.LogDir
	getPath, postPath := filepath.Join(dir, "bench-bare-get.json"), filepath.Join(dir, "bench-bare-post.json")
	if err := errors.Join(os.WriteFile(getPath, getBody, 0o644), os.WriteFile(postPath, postBody, 0o644)); err != nil {
		return err
	}
	port, err := proc.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "bare-server", "-addr", addr, "-get-body", getPath, "-post-body", postPath)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	cmd.Stderr = os.Stderr
	server, err := proc.Spawn(cmd)
	if err != nil {
		return err
	}
	defer server.Terminate(syscall.SIGTERM, 5*time.Second)
	base := "http://" + addr
	if err := proc.Poll(ctx, 20*time.Millisecond, 10*time.Second, func() error {
		resp, err := http.Get(base + "/top-providers")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}); err != nil {
		return fmt.Errorf("bare server: %w", err)
	}
	s.logf("bare net/http server, claimd's answers as fixed bodies: GET %d clients %s, POST %d clients %s",
		s.sc.LookupConc, s.sc.LookupDur, s.sc.SingleConc, s.sc.SingleDur)
	b := st.Bare
	b.Top, err = s.benchHooked(ctx, st.label()+" bare GET", s.cpuHooks(server.Pid(), &b.TopCPU, (*loadResult).total),
		"-url", base, "-mode", "top", "-concurrency", strconv.Itoa(s.sc.LookupConc), "-duration", s.sc.LookupDur.String(), "-verify=false")
	if err != nil {
		return err
	}
	// The answers name claims other than those sent; with -verify=false
	// nothing reads what the generator finds amiss in them.
	b.Post, err = s.benchHooked(ctx, st.label()+" bare POST", s.cpuHooks(server.Pid(), &b.PostCPU, (*loadResult).total),
		"-url", base, "-mode", "single", "-lines", "4", "-npis", strconv.Itoa(s.sc.NPIs), "-seed", "21",
		"-concurrency", strconv.Itoa(s.sc.SingleConc), "-duration", s.sc.SingleDur.String(), "-verify=false")
	return err
}

// answersOf fetches claimd's answer to GET /top-providers and to GET of a
// stored 4-line claim (the body a 201 carries).
func (s *suite) answersOf(ctx context.Context, p *claimdProc) (top, claim []byte, err error) {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(context.Background())
	var id string
	if err := conn.QueryRow(ctx, `SELECT id FROM claims WHERE line_count = 4 ORDER BY received_at DESC LIMIT 1`).Scan(&id); err != nil {
		return nil, nil, fmt.Errorf("a stored 4-line claim: %w", err)
	}
	get := func(path string) ([]byte, error) {
		resp, err := http.Get(p.url + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	if top, err = get("/top-providers"); err != nil {
		return nil, nil, err
	}
	claim, err = get("/claims/" + id)
	return top, claim, err
}
