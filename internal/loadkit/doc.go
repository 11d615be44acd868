// Package loadkit is what the benchmark (cmd/claimbench) and the
// fault-injection suite (internal/faulttest) share to load claimd and check
// what it holds afterwards: generated claims and their JSON bodies, money as
// integer cents, the outcome a client knows of a claim, the /top-providers
// list, the ranking's Redis scores and the Postgres totals (key names from
// rank.Keys), claimd's /metrics read with expfmt, and claimd processes run on
// one safe process type.
//
// It does not import testing: claimbench is a command, and the suite wraps
// these helpers in its own testing.TB ones.
package loadkit
