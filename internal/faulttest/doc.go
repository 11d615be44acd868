// Package faulttest runs the real claimd binary as a process: the
// fault-injection suite, the proofs of async mode, and the
// end-to-end test of the monitoring. The fault-injection suite runs claimd
// against a redis-server and, where a scenario stops it, a postgres of its
// own, drives concurrent ingest load while it kills, pauses, flushes and
// restarts those processes, and then checks the promise to users:
// every claim acknowledged with a 2xx is in Postgres exactly once, no refused
// claim is, the Postgres totals equal the sum of the lines, every Redis score
// equals the Postgres total, and /top-providers equals an independent
// computation from the claims the suite generated.
//
// The suite is slow (minutes) and starts processes, so its scenarios run
// only when FAULTS=1 is set (make test-faults); otherwise they skip.
//
// The proofs of async mode (async_test.go, TestAsync*) run in every go test:
// claimd serve with INGEST_MODE=async answers 202 once RabbitMQ has confirmed
// a claim, and claimd worker processes store it later. They stop the workers,
// SIGKILL them, restart a private broker under load, and replay a dead letter
// with claimd dlq; Verify then waits until the queue is drained and checks
// the same promise, a 202 counting as the acknowledgement. They use the
// shared Postgres (a database of their own), the shared RabbitMQ (queues of
// their own) or a private node, and redis-servers of their own.
//
// The end-to-end test of the monitoring (prometheus_test.go,
// TestPrometheusScrapesDashboard) also runs in every go test: a real
// Prometheus (Debian's binary) scrapes claimd serve in async mode and a
// worker under a short load, and every query of the Grafana dashboard must
// return data through Prometheus's HTTP API.
//
// The helpers live in non-test files so each one can be read on its own:
// servers.go (a postgres of its own, and a standby of it; redis-server is
// testenv.RedisServer, a Redis Cluster testenv.RedisCluster), rabbit.go (a
// private RabbitMQ node), rabbitcluster.go (three of them joined in a
// cluster), prometheus.go (a Prometheus server),
// claimd.go (the serve and worker processes, and claimd commands), load.go
// (claims and the load generator) and verify.go (the final checks). They
// are testing.TB wrappers around internal/loadkit, which the benchmark
// (cmd/claimbench) shares: claims, cents, outcomes, the top list, Redis
// scores and Postgres totals, /metrics, and child processes (loadkit/proc)
// that die with the test binary.
package faulttest
