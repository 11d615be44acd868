package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/claim-process/claim-process/internal/queue"
)

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
	status := queue.NewStatus(rdb, cfg.Keys, cfg.Status)
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
