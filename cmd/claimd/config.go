package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
)

// setting is one environment variable the service reads.
type setting struct {
	name, def, help string
}

// settings lists every environment variable, with its default; --help prints them.
var settings = []setting{
	{"HTTP_ADDR", ":8000", "address the HTTP server listens on (make run: 127.0.0.1:8000)"},
	{"METRICS_ADDR", "", "when set (e.g. 127.0.0.1:9100), /metrics is served there alone, not on HTTP_ADDR"},
	{"DATABASE_URL", "postgres://127.0.0.1:5432/claims?sslmode=disable", "Postgres connection URL; the database is created when missing"},
	{"REDIS_URL", "redis://127.0.0.1:6379/0", "Redis connection URL (a standalone server)"},
	{"REDIS_CLUSTER_URL", "", "Redis Cluster nodes, redis://host:port?addr=host:port&addr=...; when set, used instead of REDIS_URL"},
	{"REDIS_KEY_PREFIX", rank.DefaultPrefix, "prefix of every Redis key the service uses"},
	{"RANK_SHARDS", "1", "sorted sets the ranking is split into (by NPI hash), 1-256; on a cluster they spread over the masters"},
	{"RANK_RETENTION", claim.DefaultRetention.String(), "periods of each window Redis keeps, the current one included (window=count, comma-separated); older boards leave Redis on their own and are answered from Postgres"},
	{"RECONCILE_INTERVAL", shortDuration(rank.DefaultReconcileInterval), "how often Redis is reconciled with Postgres"},
	{"TOP_PROVIDERS_RATE_LIMIT", "10/min", "requests per client to /top-providers, and apart to /providers/{npi}: N/s, N/min, N/h, or 0 for no limit"},
	{"IDEMPOTENCY_TTL", shortDuration(ingest.DefaultKeyTTL), "how long Idempotency-Key outcomes are remembered"},
	{"API_KEYS", "", "comma-separated API keys; when set (or API_KEYS_FILE is), posting and reading claims needs Authorization: Bearer <key>"},
	{"API_KEYS_FILE", "", "file with one API key per line (# comments allowed)"},
	{"ALLOW_ANONYMOUS_READS", "false", "without API keys, let anyone who can reach the service read every claim (GET /claims/{id}); for local use (make run sets it)"},
	{"IDEMPOTENCY_KEYS_PER_CLIENT", strconv.Itoa(ingest.DefaultKeysPerClient), "most Idempotency-Keys one client holds at once (a new one past it: 429)"},
	{"QUEUED_PER_CLIENT", strconv.Itoa(queue.DefaultQueuedPerClient), "async mode: most claims of one client queued and not stored at once (past it: 429)"},
	{"VALIDATE_NPI_CHECKSUM", "false", "also refuse provider NPIs whose check digit is wrong (Luhn, prefix 80840)"},
	{"SERVICE_DATE_EARLIEST", claim.DefaultEarliestServiceDate.Format(time.DateOnly), "the earliest service date accepted (YYYY-MM-DD)"},
	{"SERVICE_DATE_MAX_AHEAD", shortDuration(claim.DefaultServiceDateAhead), "how far after today (UTC) a service date may be; 0s: today at the latest"},
	{"MIGRATE_ON_START", "true", "serve creates the database if missing and applies pending migrations first"},
	{"INGEST_BATCH_SIZE", strconv.Itoa(ingest.DefaultBatchSize), "group commit: most claims stored in one transaction"},
	{"INGEST_BATCH_WAIT", shortDuration(ingest.DefaultBatchWait), "group commit: longest a claim waits for others to share its transaction"},
	{"INGEST_WRITERS", strconv.Itoa(ingest.DefaultWriters), "group commit: transactions in flight at once"},
	{"INGEST_QUEUE_SIZE", strconv.Itoa(ingest.DefaultBacklog), "claims waiting to be stored before POST /claims answers 503 + Retry-After"},
	{"INGEST_MODE", "sync", "sync: POST /claims stores the claim, 201; async: it queues it on RabbitMQ, 202, and `claimd worker` stores it"},
	{"RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL, or a cluster's nodes' URLs comma-separated: claimd connects to the first that answers and moves on when its node dies (async mode, claimd worker, claimd dlq)"},
	{"RABBITMQ_QUEUE_REPLICAS", "0", "nodes a new queue is replicated on (x-quorum-initial-group-size); 0: 3 when RABBITMQ_URL lists several nodes, unset with one; -1: unset with several too (a queue created while one node was listed)"},
	{"EVENTS_EXCHANGE", events.DefaultExchange, "topic exchange on RABBITMQ_URL that stored and reversed claims' events (claim.stored, claim.reversed) go to, through the outbox; set empty (or off): events off, none written nor published"},
	{"EVENTS_QUEUE", events.DefaultQueue, "durable quorum queue bound to EVENTS_EXCHANGE (claim.#) where events wait for the payments consumer"},
	{"RABBITMQ_QUEUE", queue.DefaultQueue, "the durable quorum queue of claims; its dead letters go to <queue>.dead"},
	{"QUEUE_DELIVERY_LIMIT", strconv.Itoa(queue.DefaultDeliveryLimit), "returns of a failing message to the queue before the broker dead-letters it (fixed when the queue is first declared)"},
	{"PUBLISH_CONFIRM_TIMEOUT", shortDuration(queue.DefaultConfirmTimeout), "async mode: longest wait for the broker's confirm before POST /claims answers 503"},
	{"QUEUED_STATUS_TTL", shortDuration(queue.DefaultStatusTTL), "async mode: how long Redis remembers an accepted claim not stored yet (GET /claims/{id} says queued)"},
	{"WORKER_ADDR", ":8001", "claimd worker: address of its /metrics, /healthz and /readyz"},
	{"WORKER_CONSUMERS", strconv.Itoa(queue.DefaultConsumers), "claimd worker: channels consuming the queue"},
	{"WORKER_PREFETCH", strconv.Itoa(queue.DefaultPrefetch), "claimd worker: unacknowledged messages per consumer (their claims are stored together)"},
	{"SHUTDOWN_TIMEOUT", shortDuration(queue.DefaultDrainTimeout), "how long SIGTERM waits for in-flight requests (claimd worker: for the claims it holds)"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"ACCESS_LOG_LOOKUP_SAMPLE", strconv.Itoa(httpapi.DefaultLookupLogSample), "log one in this many successful /top-providers lookups (1: every one); every other request, and every failed lookup, is always logged"},
	{"PPROF_ADDR", "", "when set (e.g. 127.0.0.1:6060), serve net/http/pprof there; off by default"},
}

// config is every setting, read once: each component's config is complete
// here, and the commands hand it on as it is.
type config struct {
	HTTPAddr        string
	MetricsAddr     string
	PprofAddr       string
	WorkerAddr      string
	DatabaseURL     string
	RedisURL        string
	RedisClusterURL string
	Keys            rank.Keys // REDIS_KEY_PREFIX
	Retention       claim.Retention
	MigrateOnStart  bool
	ShutdownTimeout time.Duration
	LogLevel        slog.Level

	// The HTTP layer's.
	APIKeys           []string
	AnonymousReads    bool
	LookupLogSample   int
	TopProvidersLimit redis_rate.Limit

	Ingest    ingest.Config
	Reconcile rank.ReconcilerConfig

	Async     bool // INGEST_MODE=async
	Queue     queue.Config
	Events    events.RelayConfig // Exchange "": events off
	Publisher queue.PublisherConfig
	Status    queue.StatusConfig
	Worker    queue.WorkerConfig
}

// shortDuration writes d as a person would: "24h", not "24h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// loadConfig reads the configuration through getenv, so tests can pass their own.
// settingOff is what a setting whose empty value means "off"
// (emptyMeansOff) reads as when set empty: getenv returns "" alike for
// unset (the default) and empty.
const settingOff = "off"

// emptyMeansOff names the settings that an empty value turns off.
var emptyMeansOff = map[string]bool{"EVENTS_EXCHANGE": true}

// osGetenv is os.Getenv, but a setting of emptyMeansOff set empty reads as
// settingOff.
func osGetenv(name string) string {
	v, set := os.LookupEnv(name)
	if set && strings.TrimSpace(v) == "" && emptyMeansOff[name] {
		return settingOff
	}
	return v
}

func loadConfig(getenv func(string) string) (config, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		for _, s := range settings {
			if s.name == name {
				return s.def
			}
		}
		panic("unknown setting " + name)
	}
	var (
		cfg  config
		errs []string
	)
	bad := func(name string, err error) { errs = append(errs, fmt.Sprintf("%s=%q: %v", name, getenv(name), err)) }
	duration := func(name string) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err == nil && d <= 0 {
			err = fmt.Errorf("must be positive")
		}
		if err != nil {
			bad(name, err)
		}
		return d
	}
	positive := func(name string) int {
		n, err := strconv.Atoi(get(name))
		if err == nil && n <= 0 {
			err = fmt.Errorf("must be positive")
		}
		if err != nil {
			bad(name, err)
		}
		return n
	}
	integer := func(name string) int {
		n, err := strconv.Atoi(get(name))
		if err != nil {
			bad(name, err)
		}
		return n
	}
	boolean := func(name string) bool {
		b, err := strconv.ParseBool(get(name))
		if err != nil {
			bad(name, err)
		}
		return b
	}

	cfg.HTTPAddr = get("HTTP_ADDR")
	cfg.MetricsAddr = strings.TrimSpace(getenv("METRICS_ADDR"))
	cfg.AnonymousReads = boolean("ALLOW_ANONYMOUS_READS")
	cfg.LookupLogSample = positive("ACCESS_LOG_LOOKUP_SAMPLE")
	cfg.PprofAddr = strings.TrimSpace(getenv("PPROF_ADDR"))
	cfg.DatabaseURL = get("DATABASE_URL")
	cfg.RedisURL = get("REDIS_URL")
	cfg.RedisClusterURL = strings.TrimSpace(getenv("REDIS_CLUSTER_URL"))
	cfg.Keys = rank.Keys{Prefix: get("REDIS_KEY_PREFIX"), Shards: positive("RANK_SHARDS")}
	if strings.ContainsAny(cfg.Keys.Prefix, "{}") {
		// The ranking's keys carry hash tags; braces in the prefix would
		// move a shard's keys into different cluster slots.
		bad("REDIS_KEY_PREFIX", fmt.Errorf("must not contain { or }"))
	}
	if cfg.Keys.Shards > rank.MaxShards {
		bad("RANK_SHARDS", fmt.Errorf("at most %d: every lookup reads every shard", rank.MaxShards))
	}
	retention, err := claim.ParseRetention(get("RANK_RETENTION"))
	if err != nil {
		bad("RANK_RETENTION", err)
	}
	cfg.Retention = retention
	cfg.Reconcile = rank.ReconcilerConfig{Interval: duration("RECONCILE_INTERVAL")}
	cfg.ShutdownTimeout = duration("SHUTDOWN_TIMEOUT")
	keyTTL := duration("IDEMPOTENCY_TTL")
	if keyTTL > 0 && keyTTL < time.Minute {
		// Shorter than a key's lease, expiry would delete keys still in use.
		bad("IDEMPOTENCY_TTL", fmt.Errorf("must be at least 1m"))
	}
	cfg.APIKeys = strings.FieldsFunc(getenv("API_KEYS"), func(r rune) bool { return r == ',' })
	if path := strings.TrimSpace(getenv("API_KEYS_FILE")); path != "" {
		keys, err := readKeysFile(path)
		if err != nil {
			bad("API_KEYS_FILE", err)
		}
		cfg.APIKeys = append(cfg.APIKeys, keys...)
	}
	cfg.MigrateOnStart = boolean("MIGRATE_ON_START")
	cfg.Ingest = ingest.Config{
		KeyTTL:        keyTTL,
		KeysPerClient: int64(positive("IDEMPOTENCY_KEYS_PER_CLIENT")),
		BatchSize:     positive("INGEST_BATCH_SIZE"),
		BatchWait:     duration("INGEST_BATCH_WAIT"),
		Writers:       positive("INGEST_WRITERS"),
		Backlog:       positive("INGEST_QUEUE_SIZE"),
	}
	switch mode := get("INGEST_MODE"); mode {
	case "sync":
	case "async":
		cfg.Async = true
	default:
		bad("INGEST_MODE", fmt.Errorf("must be sync or async"))
	}
	cfg.Queue = queue.Config{URL: get("RABBITMQ_URL"), Queue: get("RABBITMQ_QUEUE"), DeliveryLimit: positive("QUEUE_DELIVERY_LIMIT"),
		Replicas: integer("RABBITMQ_QUEUE_REPLICAS")}
	cfg.Publisher = queue.PublisherConfig{Config: cfg.Queue, ConfirmTimeout: duration("PUBLISH_CONFIRM_TIMEOUT")}
	cfg.Events = events.RelayConfig{URL: get("RABBITMQ_URL"), Exchange: get("EVENTS_EXCHANGE"), Queue: get("EVENTS_QUEUE")}
	if cfg.Events.Exchange == settingOff {
		cfg.Events.Exchange = ""
	}
	cfg.Status = queue.StatusConfig{TTL: duration("QUEUED_STATUS_TTL"), PerClient: int64(positive("QUEUED_PER_CLIENT"))}
	cfg.WorkerAddr = get("WORKER_ADDR")
	cfg.Worker = queue.WorkerConfig{Config: cfg.Queue, Consumers: positive("WORKER_CONSUMERS"),
		Prefetch: positive("WORKER_PREFETCH"), DrainTimeout: cfg.ShutdownTimeout}
	limit, err := httpapi.ParseRateLimit(get("TOP_PROVIDERS_RATE_LIMIT"))
	if err != nil {
		bad("TOP_PROVIDERS_RATE_LIMIT", err)
	}
	cfg.TopProvidersLimit = limit
	earliest, err := time.Parse(time.DateOnly, get("SERVICE_DATE_EARLIEST"))
	if err != nil {
		bad("SERVICE_DATE_EARLIEST", errors.New("expected a date, YYYY-MM-DD"))
	}
	ahead, err := time.ParseDuration(get("SERVICE_DATE_MAX_AHEAD"))
	if err == nil && ahead < 0 {
		err = errors.New("must not be negative")
	}
	if err != nil {
		bad("SERVICE_DATE_MAX_AHEAD", err)
	}
	cfg.Ingest.Rules = claim.DefaultRulesWithDates(earliest, ahead)
	if boolean("VALIDATE_NPI_CHECKSUM") {
		cfg.Ingest.Rules = append(cfg.Ingest.Rules, claim.NPIChecksum)
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL"))); err != nil {
		bad("LOG_LEVEL", err)
	}
	if len(errs) > 0 {
		return config{}, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return cfg, nil
}

// readKeysFile reads API keys, one a line; blank lines and # comments are skipped.
func readKeysFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	return keys, nil
}
