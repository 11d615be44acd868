package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
)

// The Postgres store and the Redis ranking fit every interface that wants
// them: this package is the one place that knows the implementations.
var (
	_ ingest.ClaimStore = (*store.Store)(nil)
	_ queue.ClaimReader = (*store.Store)(nil)
	_ rank.TopReader    = (*store.Store)(nil)
	_ rank.Truth        = (*store.Store)(nil)
	_ ingest.Ranking    = (*rank.Redis)(nil)
	_ rank.TopReader    = (*rank.Redis)(nil)

	_ httpapi.ClaimSubmitter    = (*ingest.Service)(nil)
	_ httpapi.ClaimStatusReader = (*queue.StatusReader)(nil)
	_ httpapi.ClaimQueue        = (*queue.Publisher)(nil)
	_ httpapi.Ranking           = (*rank.Fallback)(nil)
	_ queue.Submitter           = (*ingest.Service)(nil)
)

// app is what serve and worker share, built once: the connections, the
// metrics registry, the ranking bound to this database's epoch, the claim
// pipeline and the queued claims' statuses.
type app struct {
	cfg     config
	log     *slog.Logger
	store   *store.Store
	redis   redis.UniversalClient
	reg     *prometheus.Registry
	ranking *rank.Redis
	claims  *ingest.Service
	status  *queue.Status
}

// newApp applies pending migrations (unless MIGRATE_ON_START=false) and
// connects everything. Close releases it.
func newApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	if cfg.MigrateOnStart {
		if err := migrate(ctx, cfg, log); err != nil {
			return nil, err
		}
	}
	st, rdb, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	st.WriteEvents(cfg.Events.Exchange != "")
	a := &app{cfg: cfg, log: log, store: st, redis: rdb, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo(a.reg)
	registerPools(a.reg, st, rdb)
	a.ranking = rank.NewRedis(rdb, cfg.Keys).Keeping(cfg.Retention)
	epoch, err := st.RankingEpoch(ctx)
	if err != nil {
		a.closeConnections()
		return nil, err
	}
	a.ranking.ExpectEpoch(epoch)
	a.claims = ingest.New(st, a.ranking, cfg.Ingest, a.reg, log)
	a.status = queue.NewStatus(rdb, cfg.Keys, cfg.Status)
	return a, nil
}

// Close stores the claims the pipeline holds, then closes the connections.
func (a *app) Close() {
	a.claims.Close()
	a.closeConnections()
}

func (a *app) closeConnections() {
	_ = a.redis.Close()
	a.store.Close()
}

func (a *app) pingRedis(ctx context.Context) error { return a.redis.Ping(ctx).Err() }

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

// redisClient is the Redis client every command uses: of a cluster when
// REDIS_CLUSTER_URL is set, else of the standalone server at REDIS_URL.
// The rest of claimd sees one interface and runs the same code on both.
func redisClient(cfg config) (redis.UniversalClient, error) {
	if cfg.RedisClusterURL != "" {
		opts, err := redis.ParseClusterURL(cfg.RedisClusterURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_CLUSTER_URL: %w", err)
		}
		// Without this go-redis ignores context deadlines on reads and
		// writes, and the 50ms lookup deadline would become ReadTimeout.
		opts.ContextTimeoutEnabled = true
		opts.DialTimeout = time.Second
		opts.ReadTimeout = 500 * time.Millisecond
		opts.WriteTimeout = 500 * time.Millisecond
		opts.PoolTimeout = time.Second
		// go-redis reloads the slot map on MOVED, and otherwise only this
		// often; the hook below reloads it as soon as a node fails.
		opts.ClusterStateReloadInterval = 10 * time.Second
		opts.Protocol = cmp.Or(opts.Protocol, respVersion)
		c := redis.NewClusterClient(opts)
		c.AddHook(reloadOnNodeFailure{c})
		return c, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true // as above
	opts.DialTimeout = time.Second
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.PoolTimeout = time.Second
	opts.Protocol = cmp.Or(opts.Protocol, respVersion)
	return redis.NewClient(opts), nil
}

// respVersion is the protocol spoken to Redis unless the URL names one
// (?protocol=3): the service uses nothing of RESP3, and over RESP2 go-redis
// skips looking for push notifications before every reply (a twentieth of
// a provider lookup's CPU).
const respVersion = 2

// connect opens the Postgres store and the Redis client.
func connect(ctx context.Context, cfg config) (*store.Store, redis.UniversalClient, error) {
	rdb, err := redisClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	return st, rdb, nil
}

// tuneGC sets the garbage collector for claimd's load unless the operator
// set GOGC or GOMEMLIMIT: a request allocates a lot and keeps little, so
// with Go's default (GOGC=100 over a live heap of a few MiB) the collector
// runs far more often than the memory it saves is worth
// (docs/benchmarks.md). The soft limit keeps memory bounded whatever the
// load: nearing it, the collector runs as often as it must.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(150 << 20)
	}
}
