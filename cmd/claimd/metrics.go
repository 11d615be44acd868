package main

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/store"
)

// dependencyWatch is claimd_dependency_up: whether each dependency answers,
// checked every few seconds by serve and worker alike, for alerts and
// dashboards. It checks the dependencies /readyz asks about, each with a
// second to answer, and whether they are required or not does not matter.
type dependencyWatch struct {
	up       *prometheus.GaugeVec
	interval time.Duration
	checks   []httpapi.Dependency
}

func newDependencyWatch(reg prometheus.Registerer, interval time.Duration, checks []httpapi.Dependency) *dependencyWatch {
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "claimd", Name: "dependency_up",
		Help: "1 when the dependency answered its last check (every 5 s), 0 when not; by dependency (postgres, redis, rabbitmq).",
	}, []string{"dependency"})
	reg.MustRegister(up)
	return &dependencyWatch{up: up, interval: interval, checks: checks}
}

// Run checks every dependency now and then every interval, until ctx is done.
func (w *dependencyWatch) Run(ctx context.Context) {
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		w.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RunOnce checks each dependency (a second at most each) and sets its
// gauge; it returns which answered. A check cut short by ctx sets nothing.
func (w *dependencyWatch) RunOnce(ctx context.Context) map[string]bool {
	answered := make(map[string]bool, len(w.checks))
	for _, d := range w.checks {
		name := d.Name
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		answered[name] = d.Ping(cctx) == nil
		cancel()
		if ctx.Err() != nil {
			return answered
		}
		v := 0.0
		if answered[name] {
			v = 1
		}
		w.up.WithLabelValues(name).Set(v)
	}
	return answered
}

// buildInfo is claimd_build_info: the version and VCS revision the binary
// was built from, as labels of a constant 1.
func buildInfo(reg prometheus.Registerer) {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "claimd", Name: "build_info",
		Help:        "Always 1; its labels say which build is running (module version, VCS revision).",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision},
	})
	g.Set(1)
	reg.MustRegister(g)
}

// poolCollector exports the Postgres and Redis connection pools' figures.
type poolCollector struct {
	st  *store.Store
	rdb redis.UniversalClient

	pgAcquired, pgIdle, pgTotal, pgMax *prometheus.Desc
	pgAcquires, pgEmptyWaits           *prometheus.Desc
	pgWait                             *prometheus.Desc
	redisTotal, redisIdle              *prometheus.Desc
	redisHits, redisMisses, redisWaits *prometheus.Desc
	redisTimeouts                      *prometheus.Desc
}

func registerPools(reg prometheus.Registerer, st *store.Store, rdb redis.UniversalClient) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("claimd_"+name, help, nil, nil)
	}
	reg.MustRegister(&poolCollector{st: st, rdb: rdb,
		pgAcquired:    d("pgxpool_acquired_connections", "Postgres connections in use now."),
		pgIdle:        d("pgxpool_idle_connections", "Postgres connections idle in the pool now."),
		pgTotal:       d("pgxpool_connections", "Postgres connections open now (acquired, idle and being opened)."),
		pgMax:         d("pgxpool_max_connections", "Most Postgres connections the pool opens."),
		pgAcquires:    d("pgxpool_acquires_total", "Postgres connections taken from the pool."),
		pgEmptyWaits:  d("pgxpool_empty_acquires_total", "Postgres connection acquires that had to wait for one (the pool was exhausted)."),
		pgWait:        d("pgxpool_acquire_wait_seconds_total", "Time spent waiting for a Postgres connection from the pool."),
		redisTotal:    d("redis_pool_connections", "Redis connections open now."),
		redisIdle:     d("redis_pool_idle_connections", "Redis connections idle in the pool now."),
		redisHits:     d("redis_pool_hits_total", "Redis commands that found a free connection in the pool."),
		redisMisses:   d("redis_pool_misses_total", "Redis commands that had to open a connection."),
		redisWaits:    d("redis_pool_waits_total", "Redis commands that waited for a connection from the pool."),
		redisTimeouts: d("redis_pool_timeouts_total", "Redis commands that gave up waiting for a connection from the pool."),
	})
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	pg := c.st.PoolStat()
	gauge(c.pgAcquired, float64(pg.AcquiredConns()))
	gauge(c.pgIdle, float64(pg.IdleConns()))
	gauge(c.pgTotal, float64(pg.TotalConns()))
	gauge(c.pgMax, float64(pg.MaxConns()))
	counter(c.pgAcquires, float64(pg.AcquireCount()))
	counter(c.pgEmptyWaits, float64(pg.EmptyAcquireCount()))
	counter(c.pgWait, pg.AcquireDuration().Seconds())
	r := c.rdb.PoolStats()
	gauge(c.redisTotal, float64(r.TotalConns))
	gauge(c.redisIdle, float64(r.IdleConns))
	counter(c.redisHits, float64(r.Hits))
	counter(c.redisMisses, float64(r.Misses))
	counter(c.redisWaits, float64(r.WaitCount))
	counter(c.redisTimeouts, float64(r.Timeouts))
}
