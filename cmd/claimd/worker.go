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
	ops := httpapi.NewOpsServer(a.reg,
		httpapi.Dependency{Name: "postgres", Ping: a.store.Ping, Required: true},
		httpapi.Dependency{Name: "rabbitmq", Ping: worker.Ready, Required: true})
	stopOps, err := serveAside(cfg.WorkerAddr, "WORKER_ADDR", ops, 30*time.Second, log)
	if err != nil {
		return err
	}
	defer stopOps()
	watch := newDependencyWatch(a.reg, 5*time.Second,
		map[string]func(context.Context) error{"postgres": a.store.Ping, "redis": a.pingRedis, "rabbitmq": worker.Ready})
	stopLoops := runLoops(context.WithoutCancel(ctx), worker, watch)

	log.Info("claimd worker consuming", "queue", cfg.Worker.Queue, "consumers", cfg.Worker.Consumers,
		"prefetch", cfg.Worker.Prefetch, "addr", cfg.WorkerAddr)
	<-ctx.Done()
	stopLoops() // the worker drains what it holds
	log.Info("claimd worker stopped")
	return nil
}
