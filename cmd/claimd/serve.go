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
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
)

// The Postgres store fits every interface that wants the truth.
var (
	_ ingest.ClaimStore   = (*store.Store)(nil)
	_ httpapi.ClaimReader = (*store.Store)(nil)
	_ rank.TopReader      = (*store.Store)(nil)
	_ rank.Truth          = (*store.Store)(nil)
	_ ingest.Ranking      = (*rank.Redis)(nil)
	_ rank.TopReader      = (*rank.Redis)(nil)
)

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: durationInSeconds}))
}

func migrate(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := store.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Migrate(ctx, log)
}

// redisClient is the Redis client every command uses.
func redisClient(cfg config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	// Without this go-redis ignores context deadlines on reads and writes,
	// and the 50ms lookup deadline would become ReadTimeout.
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = time.Second
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.PoolTimeout = time.Second
	return redis.NewClient(opts), nil
}

// connect opens the Postgres store and the Redis client; close releases both.
func connect(ctx context.Context, cfg config) (st *store.Store, rdb *redis.Client, close func(), err error) {
	rdb, err = redisClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err = store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, nil, err
	}
	return st, rdb, func() {
		_ = rdb.Close()
		st.Close()
	}, nil
}

// tuneGC sets the garbage collector for claimd's load unless the operator
// set GOGC or GOMEMLIMIT: a request allocates a lot and keeps little, so
// with Go's default (GOGC=100 over a live heap of a few MiB) collection ran
// so often that ingest went 13-19% faster at GOGC=400 (4.4-4.6k -> 5.2k
// claims/s, peak RSS 30 -> 44 MiB). The soft limit keeps memory bounded
// whatever the load: nearing it, the collector runs as often as it must.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(150 << 20)
	}
}

// start is what serve and worker share: migrations (unless turned off), the
// connections, a metrics registry, and the ranking bound to this database's
// epoch. close releases the connections.
func start(ctx context.Context, cfg config, log *slog.Logger) (st *store.Store, rdb *redis.Client,
	reg *prometheus.Registry, ranking *rank.Redis, close func(), err error) {
	if cfg.MigrateOnStart {
		if err := migrate(ctx, cfg, log); err != nil {
			return nil, nil, nil, nil, nil, err
		}
	}
	st, rdb, close, err = connect(ctx, cfg)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	reg = prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo(reg)
	registerPools(reg, st, rdb)
	ranking = rank.NewRedis(rdb, rank.Keys{Prefix: cfg.RedisKeyPrefix})
	epoch, err := st.RankingEpoch(ctx)
	if err != nil {
		close()
		return nil, nil, nil, nil, nil, err
	}
	ranking.ExpectEpoch(epoch)
	return st, rdb, reg, ranking, close, nil
}

func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	st, rdb, reg, ranking, closeConns, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeConns()
	keys := rank.Keys{Prefix: cfg.RedisKeyPrefix}
	rankMetrics := rank.NewMetrics(reg)
	reconciler := rank.NewReconciler(st, ranking, rank.ReconcilerConfig{Interval: cfg.ReconcileInterval}, rankMetrics, log)
	ingestCfg := cfg.Ingest
	ingestCfg.Rules = cfg.Rules
	claims := ingest.New(st, ranking, ingestCfg, reg, log)
	defer claims.Close() // after the HTTP server has drained: stores what is queued
	status := queue.NewStatus(rdb, cfg.RedisKeyPrefix, cfg.Status)
	var publisher *queue.Publisher
	if cfg.Async {
		publisher = queue.NewPublisher(queue.PublisherConfig{Config: cfg.Queue, ConfirmTimeout: cfg.PublishWait},
			status, queue.NewMetrics(reg), log)
	}
	deps := httpapi.Deps{
		Claims:              claims,
		QueueStatus:         status,
		APIKeys:             httpapi.NewAPIKeys(cfg.APIKeys),
		AllowAnonymousReads: cfg.AnonymousReads,
		ClaimReader:         st,
		Top:                 rank.NewFallback(ranking, st, rank.FallbackConfig{}, rankMetrics, log),
		RateLimiter:         httpapi.NewRateLimiter(rdb, cfg.TopProvidersLimit, keys.RateLimit),
		PingPostgres:        st.Ping,
		PingRedis:           func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		Registry:            reg,
		MetricsElsewhere:    cfg.MetricsAddr != "",
		Log:                 log,
	}
	if publisher != nil {
		deps.Queue = publisher
	}
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
	// reconciler, then (deferred) close Redis and Postgres.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		reconciler.Start(bgCtx)
	}()
	go func() {
		defer wg.Done()
		claims.MaintainKeys(bgCtx, time.Minute)
	}()
	checks := map[string]func(context.Context) error{
		"postgres": st.Ping,
		"redis":    func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	}
	if publisher != nil {
		checks["rabbitmq"] = publisher.Ready
		wg.Add(1)
		go func() {
			defer wg.Done()
			publisher.Run(bgCtx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchDependencies(bgCtx, dependencyUp(reg), 5*time.Second, checks)
	}()
	defer func() {
		stopBackground()
		wg.Wait()
	}()

	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	mode := "sync"
	if cfg.Async {
		mode = "async"
	}
	log.Info("claimd serving", "addr", ln.Addr().String(), "ingest_mode", mode, "reconcile_interval_seconds", cfg.ReconcileInterval.Seconds(),
		"rules", cfg.Rules.Names(), "api_keys", len(cfg.APIKeys), "metrics_addr", cfg.MetricsAddr)
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
	st, rdb, closeConns, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeConns()
	out := json.NewEncoder(stdout)
	if audit {
		diffs, checked, err := st.Audit(ctx)
		if err != nil {
			return err
		}
		type difference struct {
			ProviderNPI string       `json:"provider_npi"`
			Totals      *claim.Cents `json:"provider_totals_cents"`
			Lines       *claim.Cents `json:"claim_lines_cents"`
		}
		report := struct {
			Checked     int64        `json:"providers_checked"`
			Differences []difference `json:"differences"`
		}{Checked: checked, Differences: []difference{}}
		for _, d := range diffs {
			report.Differences = append(report.Differences, difference(d))
		}
		if err := out.Encode(report); err != nil {
			return err
		}
		if len(diffs) > 0 {
			return fmt.Errorf("audit: %d providers' totals differ from their claim lines", len(diffs))
		}
		return nil
	}
	mode := rank.Compare
	if full {
		mode = rank.Rebuild
	}
	ranking := rank.NewRedis(rdb, rank.Keys{Prefix: cfg.RedisKeyPrefix})
	rec := rank.NewReconciler(st, ranking, rank.ReconcilerConfig{}, rank.NewMetrics(prometheus.NewRegistry()), log)
	res, err := rec.RunOnce(ctx, mode)
	if err != nil {
		return err
	}
	return out.Encode(map[string]any{
		"skipped": res.Skipped, "rebuilt": res.Rebuilt, "providers": res.Providers,
		"repaired": res.Repaired, "drift_cents": int64(res.Drift), "duration": res.Duration.String(),
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

// serveMetrics serves /metrics alone on its own listener (METRICS_ADDR), so
// the operator can keep it off the API's address.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", httpapi.MetricsHandler(reg))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on METRICS_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("serving /metrics on its own address", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// countInFlight keeps count of the requests being served.
func countInFlight(next http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		defer n.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// servePprof serves the runtime profiles on their own listener, apart from
// the API, so they are never exposed where the API is.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on PPROF_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Warn("profiling endpoints enabled", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
