package ingest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/testenv"
)

const sampleLine = `{"service_date": "2025-01-15", "submitted_procedure": "D0180", "plan_group": "GRP-1000",
  "subscriber": "3730189502", "provider_npi": "1497775535", "provider_fees": 150, "allowed_fees": 10,
  "member_coinsurance": 10, "member_copay": 20}`

func mustRequest(t *testing.T, body string) claim.Submission {
	t.Helper()
	in, err := claim.DecodeJSON(strings.NewReader(body))
	require.NoError(t, err)
	return claim.Submission{Input: in}
}

// Postgres is the truth: a claim committed while Redis is unreachable is
// still a success, and the failed Redis write is counted.
func TestSubmitSucceedsWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	reg := prometheus.NewRegistry()
	svc := ingest.New(st, rank.NewRedis(dead, rank.Keys{Prefix: "x:"}), ingest.Config{}, reg, testenv.Logger(t))
	t.Cleanup(svc.Close)

	res, err := svc.Submit(context.Background(), mustRequest(t, sampleLine))
	require.NoError(t, err)
	c := res.Claim
	require.Equal(t, "170.00", c.NetFee().String())
	stored, err := st.Claim(context.Background(), "", c.ID)
	require.NoError(t, err)
	require.Equal(t, c.Lines, stored.Lines)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP claimd_redis_update_failures_total Committed batches of claims whose provider totals could not be written to Redis; reconciliation repairs them.
# TYPE claimd_redis_update_failures_total counter
claimd_redis_update_failures_total 1
# HELP claimd_claims_ingested_total Claims stored in Postgres, by how they came (mode: sync for POST /claims, batch for POST /claims/batch, async for the queue's workers).
# TYPE claimd_claims_ingested_total counter
claimd_claims_ingested_total{mode="sync"} 1
# HELP claimd_claim_submissions_total Claims submitted to be stored, by mode (sync, batch, async) and outcome: stored, duplicate (stored before: claim_id, idempotency key or redelivery), invalid, conflict (claim_id or key reused for another claim), in_flight (same key in progress), limited (the client is at a cap: idempotency keys or queued claims), unavailable (busy or storage down; retry), failed.
# TYPE claimd_claim_submissions_total counter
claimd_claim_submissions_total{mode="sync",outcome="stored"} 1
`), "claimd_redis_update_failures_total", "claimd_claims_ingested_total", "claimd_claim_submissions_total"))
}

func TestSubmitAppliesConfiguredRules(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	reg := prometheus.NewRegistry()
	rules := append(claim.DefaultRules(), claim.NPIChecksum)
	svc := ingest.New(st, rank.NewRedis(rdb, rank.Keys{Prefix: prefix}), ingest.Config{Rules: rules}, reg, nil)
	t.Cleanup(svc.Close)

	_, err := svc.Submit(context.Background(), mustRequest(t, sampleLine))
	var problems claim.Problems
	require.ErrorAs(t, err, &problems)
	require.Equal(t, "npi_checksum", problems[0].Rule)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP claimd_validation_failures_total Problems found in refused claims, by the rule that failed.
# TYPE claimd_validation_failures_total counter
claimd_validation_failures_total{rule="npi_checksum"} 1
`), "claimd_validation_failures_total"))

	_, err = svc.Submit(context.Background(), mustRequest(t, strings.Replace(sampleLine, "1497775535", "1234567893", 1)))
	require.NoError(t, err, "a valid check digit passes")
}
