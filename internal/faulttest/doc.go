// Package faulttest is the fault-injection suite of issue 3: it runs the real
// claimd binary against a redis-server and, where a scenario stops it, a
// postgres of its own, drives concurrent ingest load while it kills, pauses,
// flushes and restarts those processes, and then checks the promise to users:
// every claim acknowledged with a 2xx is in Postgres exactly once, no refused
// claim is, the Postgres totals equal the sum of the lines, every Redis score
// equals the Postgres total, and /top-providers equals an independent
// computation from the claims the suite generated.
//
// The suite is slow (minutes) and starts processes, so it runs only when
// FAULTS=1 is set (make test-faults); otherwise every test skips.
//
// The helpers live in non-test files so each one can be read on its own:
// servers.go (redis-server and postgres), claimd.go (the service process),
// load.go (claims and the load generator) and verify.go (the final checks).
package faulttest
