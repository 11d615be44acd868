// Command claimd is the claim-process service: it ingests dental claims into
// Postgres and keeps the live top-providers ranking in Redis.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	routeLibraries = true
	stderr := newLogBuffer(os.Stderr)
	err := run(ctx, os.Args[1:], osGetenv, os.Stdout, stderr)
	_ = stderr.Close()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "claimd:", err)
			os.Exit(1)
		}
	}
}

const usage = `claimd - dental claim ingestion with a live top-providers ranking

Usage:
  claimd serve                  run the HTTP service (applies pending migrations first)
  claimd migrate                create the database if missing and apply pending migrations
  claimd reconcile [--full]     one reconciliation pass of Redis against Postgres (every
                                provider compared), then exit; --full rebuilds the whole set
  claimd reconcile --audit      check Postgres's provider totals against the sum of claim
                                lines; prints the differences, exits 1 if there are any
  claimd worker                 store the claims queued by async mode (INGEST_MODE=async):
                                consume RABBITMQ_QUEUE, commit in batches, ack after the commit
  claimd dlq list [--body]      the dead-letter queue: claims the workers could not store
                                (--body also prints each claim, subscriber numbers included)
  claimd dlq replay [--id ID]... [--body-file FILE]
                                send dead letters (all, or those named) back to the queue;
                                --body-file replaces the one named message's claim with a
                                corrected one (JSON, as POST /claims takes it)
  claimd dlq purge (--id ID... | --all)
                                delete dead letters for good
  claimd help                   this text

HTTP API (serve):
  POST /claims                  a claim as application/json or text/csv -> 201
                                (async mode: 202 once RabbitMQ has it, status "queued")
  POST /claims/batch            up to 10,000 claims, JSON array or NDJSON -> per-claim results
  GET  /claims/{id}             a stored claim, or a queued one's status
  GET  /top-providers?limit=N   providers by total net fee, from Redis or Postgres
  GET  /docs                    the API reference (Swagger UI); /openapi.yaml, /openapi.json
  GET  /healthz, /readyz        liveness and readiness
  GET  /metrics                 Prometheus metrics

Environment:
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	for _, s := range slices.Concat(settings, goSettings) {
		fmt.Fprintf(w, "  %-28s %s (default %q)\n", s.name, s.help, s.def)
	}
}

// goSettings are the Go runtime's own variables, which serve and worker set
// for claimd's load unless the operator did (see tuneGC).
var goSettings = []setting{
	{"GOGC", "400", "Go's garbage collector: heap growth (%) that starts a collection; serve and worker set it unless given (Go's default is 100)"},
	{"GOMEMLIMIT", "150MiB", "Go's soft memory limit: nearing it, the collector runs as often as it must; serve and worker set it unless given"},
}

// run is the whole program, with its dependencies on the process passed in
// so tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return errors.New("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return flag.ErrHelp
	}

	fs := flag.NewFlagSet("claimd "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a parse error is returned, and main prints it once
	fs.Usage = func() {}
	var (
		full, audit bool
		dlq         dlqFlags
	)
	switch cmd {
	case "reconcile":
		fs.BoolVar(&full, "full", false, "rebuild the whole Redis ranking from Postgres")
		fs.BoolVar(&audit, "audit", false, "check the Postgres totals against the sum of claim lines; fails on any difference")
	case "dlq":
		if len(args) == 0 {
			printUsage(stderr)
			return errors.New("dlq needs list, replay or purge")
		}
		dlq.action, args = args[0], args[1:]
		dlq.register(fs)
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		printUsage(stdout)
		return err
	} else if err != nil {
		return fmt.Errorf("%w\nrun 'claimd --help' for usage", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	if routeLibraries {
		routeLibraryLogs(log)
	}

	switch cmd {
	case "serve":
		tuneGC(getenv)
		return serve(ctx, cfg, log)
	case "migrate":
		return migrate(ctx, cfg, log)
	case "reconcile":
		return reconcileOnce(ctx, cfg, log, full, audit, stdout)
	case "worker":
		tuneGC(getenv)
		return work(ctx, cfg, log)
	case "dlq":
		return deadLetters(ctx, cfg, log, dlq, stdout)
	default:
		printUsage(stderr)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
