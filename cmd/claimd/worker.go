package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/queue"
)

// work is `claimd worker`: it stores the claims async mode queued, through
// the same pipeline (group commit, provider totals, Redis ranking) as a
// synchronous POST /claims.
func work(ctx context.Context, cfg config, log *slog.Logger) error {
	st, rdb, reg, ranking, closeConns, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeConns()
	ingestCfg := cfg.Ingest
	ingestCfg.Rules = cfg.Rules
	claims := ingest.New(st, ranking, ingestCfg, reg, log)
	defer claims.Close()
	worker := queue.NewWorker(cfg.Worker, claims, queue.NewStatus(rdb, cfg.RedisKeyPrefix, cfg.Status),
		queue.NewMetrics(reg), log)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		res, status := map[string]string{"status": "ready", "postgres": "ok", "rabbitmq": "ok"}, http.StatusOK
		if err := st.Ping(ctx); err != nil {
			res["status"], res["postgres"], status = "not_ready", "down", http.StatusServiceUnavailable
		}
		if err := worker.Ready(ctx); err != nil {
			res["status"], res["rabbitmq"], status = "not_ready", "down", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(res)
	})
	ln, err := net.Listen("tcp", cfg.WorkerAddr)
	if err != nil {
		return fmt.Errorf("listen on WORKER_ADDR %s: %w", cfg.WorkerAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go watchDependencies(watchCtx, dependencyUp(reg), 5*time.Second, map[string]func(context.Context) error{
		"postgres": st.Ping,
		"redis":    func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		"rabbitmq": worker.Ready,
	})

	log.Info("claimd worker consuming", "queue", cfg.Queue.Queue, "consumers", cfg.Worker.Consumers,
		"prefetch", cfg.Worker.Prefetch, "addr", ln.Addr().String())
	worker.Run(ctx) // until SIGTERM, then drains what it holds
	log.Info("claimd worker stopped")
	return nil
}

// dlqFlags are the options of `claimd dlq`.
type dlqFlags struct {
	action   string // list, replay or purge
	body     bool
	all      bool
	ids      idList
	bodyFile string
}

type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error { *l = append(*l, v); return nil }

func (f *dlqFlags) register(fs *flag.FlagSet) {
	switch f.action {
	case "list":
		fs.BoolVar(&f.body, "body", false, "also print each message's claim (subscriber numbers included)")
	case "replay":
		fs.Var(&f.ids, "id", "message id (the claim's id) to replay; repeat for several; none replays all")
		fs.StringVar(&f.bodyFile, "body-file", "", "a corrected claim (JSON) to replay in place of the one --id names")
	case "purge":
		fs.Var(&f.ids, "id", "message id to delete; repeat for several")
		fs.BoolVar(&f.all, "all", false, "delete every dead letter")
	}
}

// deadLetters is `claimd dlq`. stdout gets JSON lines only (list: one per
// message); an empty queue is said in the log.
func deadLetters(ctx context.Context, cfg config, log *slog.Logger, f dlqFlags, stdout io.Writer) error {
	// Redis keeps the status GET /claims/{id} shows: replay and purge update it.
	rdb, err := redisClient(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	status := queue.NewStatus(rdb, cfg.RedisKeyPrefix, cfg.Status)
	switch f.action {
	case "list", "replay", "purge":
	default:
		return fmt.Errorf("unknown dlq action %q: list, replay or purge", f.action)
	}
	var bodies map[string][]byte
	if f.bodyFile != "" {
		if len(f.ids) != 1 {
			return errors.New("--body-file replaces one message: name it with one --id")
		}
		b, err := os.ReadFile(f.bodyFile)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return fmt.Errorf("%s is not JSON", f.bodyFile)
		}
		bodies = map[string][]byte{f.ids[0]: b}
	}
	if f.action == "purge" && len(f.ids) == 0 && !f.all {
		return errors.New("purge needs --id ID (repeatable) or --all")
	}
	dl, err := queue.OpenDeadLetters(cfg.Queue, status)
	if err != nil {
		return err
	}
	defer dl.Close()
	out := json.NewEncoder(stdout)
	switch f.action {
	case "list":
		list, err := dl.List(ctx, f.body)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			log.Info("the dead-letter queue is empty", "queue", cfg.Queue.DeadLetterQueue())
		}
		for _, m := range list {
			if err := out.Encode(m); err != nil {
				return err
			}
		}
		return nil
	case "replay":
		n, err := dl.Replay(ctx, f.ids, bodies)
		_ = out.Encode(map[string]int{"replayed": n})
		return err
	default:
		n, err := dl.Purge(ctx, f.ids)
		_ = out.Encode(map[string]int{"purged": n})
		return err
	}
}
