package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
)

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	var h slog.Handler = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: durationInSeconds})
	if buf, ok := w.(*logBuffer); ok {
		h = flushingHandler{h, buf}
	}
	return slog.New(h)
}

// serve is `claimd serve`: the HTTP API, and in the background the
// reconciler, the idempotency key janitor, the dependency watcher and (async
// mode) the publisher.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close() // after the HTTP server has drained: stores what the pipeline holds
	rankMetrics := rank.NewMetrics(a.reg)
	deps := httpapi.Deps{
		Claims:              a.claims,
		Statuses:            queue.NewStatusReader(a.store, a.status, !cfg.Async),
		Finder:              a.store,
		APIKeys:             httpapi.NewAPIKeys(cfg.APIKeys),
		AllowAnonymousReads: cfg.AnonymousReads,
		LookupLogSample:     cfg.LookupLogSample,
		Top:                 rank.NewFallback(a.ranking, a.store, rank.FallbackConfig{}, rankMetrics, log),
		RateLimiter:         httpapi.NewRateLimiter(a.redis, cfg.TopProvidersLimit, cfg.Keys.RateLimit),
		PingPostgres:        a.store.Ping,
		PingRedis:           a.pingRedis,
		Registry:            a.reg,
		MetricsElsewhere:    cfg.MetricsAddr != "",
		Log:                 log,
	}
	loops := []loop{
		rank.NewReconciler(a.store, a.ranking, cfg.Reconcile, rankMetrics, log),
		a.claims.KeyJanitor(time.Minute),
	}
	if cfg.Async {
		publisher := queue.NewPublisher(cfg.Publisher, a.status, queue.NewMetrics(a.reg), log)
		deps.Queue = publisher
		loops = append(loops, publisher)
	}
	if cfg.Events.Exchange != "" {
		// One relay at a time publishes, across instances (a Postgres lock);
		// every instance exports the outbox's depth.
		loops = append(loops, events.NewRelay(a.store, cfg.Events, events.NewMetrics(a.reg), log))
	}
	loops = append(loops, newDependencyWatch(a.reg, 5*time.Second, httpapi.Readiness(deps)))
	handler := httpapi.NewServer(deps)

	var inFlight atomic.Int64
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           countInFlight(handler, &inFlight),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}

	// Shutdown order: stop accepting and drain requests, then stop the
	// loops, then (deferred) store what the pipeline holds and close Redis
	// and Postgres.
	stopLoops := runLoops(context.WithoutCancel(ctx), loops...)
	defer stopLoops()
	if cfg.PprofAddr != "" {
		stop, err := serveAside(cfg.PprofAddr, "PPROF_ADDR", pprofHandler(), 0, log)
		if err != nil {
			return err
		}
		defer stop()
		log.Warn("profiling endpoints enabled", "addr", cfg.PprofAddr)
	}
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", httpapi.MetricsHandler(a.reg))
		stop, err := serveAside(cfg.MetricsAddr, "METRICS_ADDR", mux, 30*time.Second, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	mode := "sync"
	if cfg.Async {
		mode = "async"
	}
	log.Info("claimd serving", "addr", ln.Addr().String(), "ingest_mode", mode, "reconcile_interval_seconds", cfg.Reconcile.Interval.Seconds(),
		"rules", cfg.Ingest.Rules.Names(), "api_keys", len(cfg.APIKeys), "metrics_addr", cfg.MetricsAddr)
	warnOpenAccess(log, cfg, ln.Addr())

	select {
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout_seconds", cfg.ShutdownTimeout.Seconds())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Shutdown also waits for connections that were opened but never
		// carried a request (a client's spare keep-alive connection) for up
		// to 5s. If no request is being served, closing them loses nothing.
		if n := inFlight.Load(); n > 0 {
			_ = srv.Close()
			return fmt.Errorf("shutdown: %d requests still in flight: %w", n, err)
		}
		log.Info("closing connections that carried no request")
		_ = srv.Close()
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("claimd stopped")
	return nil
}

// reconcileOnce runs one reconciliation pass (comparing every provider, or
// rebuilding with full), or with audit checks Postgres's totals against the
// claim lines. It prints what it found as JSON; an audit that finds
// differences is an error.
func reconcileOnce(ctx context.Context, cfg config, log *slog.Logger, full, audit bool, stdout io.Writer) error {
	st, rdb, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		_ = rdb.Close()
		st.Close()
	}()
	out := json.NewEncoder(stdout)
	if audit {
		diffs, checked, err := st.Audit(ctx)
		if err != nil {
			return err
		}
		type difference struct {
			Board       string       `json:"board,omitempty"`
			ProviderNPI string       `json:"provider_npi"`
			Totals      *claim.Cents `json:"provider_totals_cents"`
			Lines       *claim.Cents `json:"claim_lines_cents"`
			Claims      *int64       `json:"provider_totals_claims"`
			LinesClaims *int64       `json:"claim_lines_claims"`
		}
		report := struct {
			Checked     int64        `json:"totals_checked"`
			Differences []difference `json:"differences"`
		}{Checked: checked, Differences: []difference{}}
		for _, d := range diffs {
			report.Differences = append(report.Differences, difference(d))
		}
		if err := out.Encode(report); err != nil {
			return err
		}
		if len(diffs) > 0 {
			return fmt.Errorf("audit: %d providers' totals or claim counts differ from their claim lines", len(diffs))
		}
		return nil
	}
	mode := rank.Compare
	if full {
		mode = rank.Rebuild
	}
	rec := rank.NewReconciler(st, rank.NewRedis(rdb, cfg.Keys).Keeping(cfg.Retention), cfg.Reconcile, rank.NewMetrics(prometheus.NewRegistry()), log)
	res, err := rec.RunOnce(ctx, mode)
	if err != nil {
		return err
	}
	return out.Encode(map[string]any{
		"skipped": res.Skipped, "rebuilt": res.Rebuilt, "providers": res.Providers,
		"repaired": res.Repaired, "drift_cents": int64(res.Drift), "duration_seconds": res.Duration.Seconds(),
	})
}

// warnOpenAccess says at start what anyone who can reach the service may do
// without a key: read every claim (subscriber numbers are PHI), or post them.
func warnOpenAccess(log *slog.Logger, cfg config, addr net.Addr) {
	if len(cfg.APIKeys) > 0 {
		return
	}
	loopback := false
	if tcp, ok := addr.(*net.TCPAddr); ok {
		loopback = tcp.IP.IsLoopback()
	}
	if cfg.AnonymousReads {
		log.Warn("ALLOW_ANONYMOUS_READS is on and no API keys are set: anyone who can reach the service reads every claim, subscriber numbers (PHI) included; set API_KEYS for any shared use",
			"addr", addr.String(), "loopback_only", loopback)
		return
	}
	level := slog.LevelWarn
	if loopback {
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "no API keys are set: anyone who can reach the service may post claims; reading claims is refused until API_KEYS is set",
		"addr", addr.String(), "loopback_only", loopback)
}

// countInFlight keeps count of the requests being served.
func countInFlight(next http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		defer n.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// pprofHandler serves the runtime profiles (PPROF_ADDR), apart from the API
// so they are never exposed where the API is.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
