package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/queue"
)

// work is `claimd worker`: it stores the claims async mode queued, through
// the same pipeline (group commit, provider totals, Redis ranking) as a
// synchronous POST /claims.
func work(ctx context.Context, cfg config, log *slog.Logger) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	worker := queue.NewWorker(cfg.Worker, a.claims, a.status, queue.NewMetrics(a.reg), log)
	ready := []httpapi.Dependency{
		{Name: "postgres", Ping: a.store.Ping, Required: true},
		{Name: "rabbitmq", Ping: worker.Ready, Required: true},
	}
	ops := httpapi.NewOpsServer(a.reg, ready...)
	stopOps, err := serveAside(cfg.WorkerAddr, "WORKER_ADDR", ops, 30*time.Second, log)
	if err != nil {
		return err
	}
	defer stopOps()
	// The worker writes the ranking too: Redis is watched, though a worker
	// without it is still ready.
	watch := newDependencyWatch(a.reg, 5*time.Second, append(ready, httpapi.Dependency{Name: "redis", Ping: a.pingRedis}))
	stopLoops := runLoops(context.WithoutCancel(ctx), worker, watch)

	log.Info("claimd worker consuming", "queue", cfg.Worker.Queue, "consumers", cfg.Worker.Consumers,
		"prefetch", cfg.Worker.Prefetch, "addr", cfg.WorkerAddr)
	<-ctx.Done()
	stopLoops() // the worker drains what it holds
	log.Info("claimd worker stopped")
	return nil
}
