package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// A loop works in the background until its context is done, then returns:
// the reconciler, the idempotency key janitor, the publisher, the worker,
// the dependency watcher. Each also has a one-pass method (RunOnce, or its
// Ready check) whose result tests read.
type loop interface {
	Run(ctx context.Context)
}

// runLoops runs each loop in a goroutine of its own. stop ends them and
// returns once every one has returned.
func runLoops(ctx context.Context, loops ...loop) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(func() { l.Run(ctx) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// serveAside serves handler on addr, apart from the API (METRICS_ADDR,
// PPROF_ADDR, WORKER_ADDR); what names the setting. Answers are cut off
// after writeTimeout when it is set. stop closes the server and waits for it
// to end.
func serveAside(addr, what string, handler http.Handler, writeTimeout time.Duration, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", what, addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: writeTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("server stopped", "setting", what, "err", err)
		}
	}()
	log.Info("serving", "setting", what, "addr", ln.Addr().String())
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}
