# claim-process: `make run` serves on 127.0.0.1:8000, `make test` runs every test.
# Postgres (127.0.0.1:5432), Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672) are
# started if they are down. INGEST_MODE=async make run queues claims on RabbitMQ;
# make worker stores them.

DATABASE_URL ?= postgres://root@127.0.0.1:5432/claims?sslmode=disable
REDIS_URL    ?= redis://127.0.0.1:6379/0
export DATABASE_URL REDIS_URL

GO ?= go
SHELL := /bin/bash

.PHONY: all build run worker up down migrate reconcile test test-short test-faults fuzz bench bench-shards vet fmt check services test-tools clean

all: build

build:
	$(GO) build -o bin/claimd ./cmd/claimd

services:
	@.ci/ensure-services

## test-tools: promtool, prometheus and chromium for the tests (Debian packages), when missing
test-tools:
	@.ci/ensure-test-tools

## run: create the database if missing, apply migrations, serve on 127.0.0.1:8000 (this
## machine only); without API keys it lets claims be read back, for local use
run: export HTTP_ADDR ?= 127.0.0.1:8000
run: export ALLOW_ANONYMOUS_READS ?= true
run: build services
	./bin/claimd serve

## worker: store the claims async mode queued (INGEST_MODE=async make run)
worker: export WORKER_ADDR ?= 127.0.0.1:8001
worker: build services
	./bin/claimd worker

## up: the whole stack in Docker (docker-compose.yml: claimd in async mode, a worker, Postgres,
## Redis, RabbitMQ, Prometheus on :9090, Grafana on :3000); down: stop it (data volumes kept)
up:
	docker compose up -d --build

down:
	docker compose down

migrate: build services
	./bin/claimd migrate

reconcile: build services
	./bin/claimd reconcile

## test: formatting, vet, and every test against the real Postgres and Redis;
## then the HTTP and queue suites again on a six-node Redis Cluster of their
## own (the ranking suite runs on both by itself)
test: services test-tools check
	$(GO) test -race -count=1 ./...
	CLAIMD_TEST_REDIS=cluster $(GO) test -race -count=1 ./internal/httpapi/ ./internal/queue/

## test-faults: the fault-injection suite: claimd as a real process, with its own
## redis-server and postgres killed, paused, flushed and restarted under load
## (the async-mode scenarios, TestAsync*, run in make test)
test-faults: services
	@mkdir -p bin
	@if FAULTS=1 $(GO) test -count=1 -timeout 15m -v -skip 'TestAsync|TestRabbitServer|TestPrometheus' ./internal/faulttest/ > bin/faults.log 2>&1; then \
		grep -E '^(--- |ok|PASS)|scenario' bin/faults.log; \
	else cat bin/faults.log; exit 1; fi

FUZZTIME ?= 30s
## fuzz: each fuzz target for FUZZTIME (not in CI); new failing inputs land in testdata/fuzz
fuzz: services
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeAndParse$$' -fuzztime $(FUZZTIME) ./internal/claim/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCents$$' -fuzztime $(FUZZTIME) ./internal/claim/
	$(GO) test -run '^$$' -fuzz '^FuzzScanObject$$' -fuzztime $(FUZZTIME) ./internal/claim/
	$(GO) test -run '^$$' -fuzz '^FuzzPostClaim$$' -fuzztime $(FUZZTIME) ./internal/httpapi/
	$(GO) test -run '^$$' -fuzz '^FuzzArrayReader$$' -fuzztime $(FUZZTIME) ./internal/httpapi/

## test-short: the same tests without the race detector (faster)
test-short: services test-tools
	$(GO) test -count=1 ./...

BENCH_SCALE ?= default
## bench-shards: ingest and lookups with RANK_SHARDS 1 and 16, on the standalone Redis and on a
## six-node Redis Cluster it starts (about 5 minutes; docs/scaling.md)
bench-shards: services
	@mkdir -p bin
	$(GO) build -o bin/claimd ./cmd/claimd
	$(GO) build -o bin/claimbench ./cmd/claimbench
	scripts/bench-shards.sh bin/claimd bin/claimbench | tee bin/bench-shards.md

## bench: the whole benchmark suite in one run (about 7 minutes; BENCH_SCALE=large adds a
## 10M-line stage, about 10): Postgres and Redis ceilings, claimd single and batch ingest, async mode
## (accept, drain, end-to-end, beside sync single), lookups from
## Redis (all-time, a provider's rank, a period's board; alone and under ingest) and from the
## Postgres fallback, a full rebuild under lookups, claimd RSS, Redis bytes per provider and per
## provider per board, then the go test micro-benchmarks (BENCH_LINES,
## BENCH_PROVIDERS; raw output in bin/bench.txt). Fresh database claims_bench_<time> and Redis
## prefix bench:<time>:, both removed at the end. Prints the table, also in bin/bench.md. Then
## scripts/bench-events.sh (about 2 minutes): single ingest with events off and on, side by side,
## and scripts/bench-boards.sh (about 2 minutes): every board against all-time only, likewise.
bench: services
	@mkdir -p bin
	$(GO) build -o bin/claimd ./cmd/claimd
	$(GO) build -o bin/claimbench ./cmd/claimbench
	./bin/claimbench suite -scale $(BENCH_SCALE) -claimd bin/claimd -out bin/bench.md
	@printf '\n## Events to payments: single ingest with events off and on, side by side\n\n' >> bin/bench.md
	scripts/bench-events.sh bin/claimd bin/claimbench | tee -a bin/bench.md
	@printf '\n## Boards: single ingest with every board against all-time only, side by side\n\n' >> bin/bench.md
	scripts/bench-boards.sh bin/claimd bin/claimbench | tee -a bin/bench.md

check: vet fmt

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin
