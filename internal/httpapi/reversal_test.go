package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// reversalLine nets 160.00 to provider npi: 250 + 10 copay - 100 allowed.
func reversalLine(npi string) string {
	return fmt.Sprintf(`{"service_date": "2025-01-15", "submitted_procedure": "D0180", "plan_group": "GRP-1000",
  "subscriber": "3730189502", "provider_npi": %q, "provider_fees": 250, "allowed_fees": 100,
  "member_coinsurance": 0, "member_copay": 10}`, npi)
}

// topTotals is /top-providers?limit=100 as provider -> total, and its source.
func topTotals(t *testing.T, url string) (map[string]string, string) {
	t.Helper()
	r := mustDo(t, http.MethodGet, url+"/top-providers?limit=100", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	body := r.json(t)
	out := map[string]string{}
	for _, p := range body["top_providers"].([]any) {
		m := p.(map[string]any)
		out[m["provider_npi"].(string)] = fmt.Sprint(m["total_net_fee"])
	}
	return out, body["source"].(string)
}

// A reversal takes the claim's net fees out of its providers' totals, in
// Postgres and in Redis; the claim stays, reversed. Reversing it again, by
// id or by claim_id, answers the same and changes nothing.
func TestReversalTakesTheClaimOutOfTheTotals(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	keep := mustPost(t, s.url+"/claims", "application/json",
		`{"claim_id": "PAY-K", "lines": [`+reversalLine("1000000001")+`]}`)
	require.Equal(t, http.StatusCreated, keep.status)
	posted := mustPost(t, s.url+"/claims", "application/json",
		`{"claim_id": "PAY-R", "lines": [`+reversalLine("1000000001")+`, `+reversalLine("1000000002")+`]}`)
	require.Equal(t, http.StatusCreated, posted.status)
	id := posted.json(t)["id"].(string)
	totals, source := topTotals(t, s.url)
	require.Equal(t, "redis", source)
	require.Equal(t, map[string]string{"1000000001": "320", "1000000002": "160"}, totals)

	rev := mustPost(t, s.url+"/claims/"+id+"/reversal", "application/json",
		`{"reason": "payment_failed", "detail": "card declined"}`)
	require.Equal(t, http.StatusOK, rev.status, string(rev.body))
	body := rev.json(t)
	require.Equal(t, "reversed", body["status"])
	require.Equal(t, "payment_failed", body["reason"])
	require.Equal(t, "card declined", body["detail"])
	require.Equal(t, "PAY-R", body["claim_id"])
	reversedAt, err := time.Parse(time.RFC3339Nano, body["reversed_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), reversedAt, time.Minute)

	totals, source = topTotals(t, s.url)
	require.Equal(t, "redis", source)
	require.Equal(t, map[string]string{"1000000001": "160"}, totals, "a provider with no claims left is not listed")
	got := mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil)
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, string(rev.body), string(got.body), "GET shows the reversed claim")

	for _, ref := range []string{id, "PAY-R"} {
		again := mustPost(t, s.url+"/claims/"+ref+"/reversal", "application/json", `{"reason": "sent_in_error"}`)
		require.Equal(t, http.StatusOK, again.status)
		require.Equal(t, string(rev.body), string(again.body), "the first reversal stands")
	}
	withKey := mustDoWith(t, http.MethodPost, s.url+"/claims/"+id+"/reversal",
		map[string]string{"Idempotency-Key": "rev-1"}, nil)
	require.Equal(t, http.StatusOK, withKey.status)
	require.Equal(t, string(rev.body), string(withKey.body))
	totals, _ = topTotals(t, s.url)
	require.Equal(t, map[string]string{"1000000001": "160"}, totals, "a provider with no claims left is not listed")

	// Postgres answers the same.
	pg, err := s.store.TopProviders(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Len(t, pg, 1)
	require.Equal(t, "1000000001", pg[0].ProviderNPI)
	require.EqualValues(t, 16000, pg[0].NetFee)
	// Nor is it ranked.
	res := mustDo(t, http.MethodGet, s.url+"/providers/1000000002", "", nil)
	require.Equal(t, http.StatusNotFound, res.status, string(res.body))
}

// Bad reversals change nothing and say why, as problem+json.
func TestReversalBadInput(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	posted := mustPost(t, s.url+"/claims", "application/json", `{"lines": [`+reversalLine("1000000003")+`]}`)
	require.Equal(t, http.StatusCreated, posted.status)
	id := posted.json(t)["id"].(string)
	for _, c := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"reason": "bored"}`, http.StatusUnprocessableEntity, "reason"},
		{`{"reason": "other", "detail": "` + strings.Repeat("x", 1001) + `"}`, http.StatusUnprocessableEntity, "detail"},
		{`{"reason": "other"`, http.StatusBadRequest, ""},
		{`{"reason": "other", "why": 1}`, http.StatusBadRequest, ""},
		{`["other"]`, http.StatusBadRequest, ""},
		{`{"detail": "` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, ""},
	} {
		r := mustPost(t, s.url+"/claims/"+id+"/reversal", "application/json", c.body)
		require.Equal(t, c.status, r.status, "%.40s: %s", c.body, r.body)
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
		if c.field != "" {
			require.Contains(t, string(r.body), `"field":"`+c.field+`"`)
		}
	}
	totals, _ := topTotals(t, s.url)
	require.Equal(t, map[string]string{"1000000003": "160"}, totals, "nothing was reversed")
	require.Equal(t, "stored", mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil).json(t)["status"])

	for _, ref := range []string{"01a22487-af71-7a68-b316-000000000000", "PAY-NONE", "not-an-id"} {
		r := mustPost(t, s.url+"/claims/"+ref+"/reversal", "application/json", "")
		require.Equal(t, http.StatusNotFound, r.status, ref)
	}
}

// A client reverses only its own claims: another's is a 404, as an id
// never stored.
func TestReversalOnlyByItsSender(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-alpha", "k-beta"}})
	alpha := map[string]string{"Authorization": "Bearer k-alpha"}
	beta := map[string]string{"Authorization": "Bearer k-beta"}
	posted := mustPostWith(t, s.url+"/claims", `{"claim_id": "PAY-O", "lines": [`+reversalLine("1000000004")+`]}`, alpha)
	require.Equal(t, http.StatusCreated, posted.status)
	id := posted.json(t)["id"].(string)
	for _, ref := range []string{id, "PAY-O"} {
		r := mustDoWith(t, http.MethodPost, s.url+"/claims/"+ref+"/reversal", beta, nil)
		require.Equal(t, http.StatusNotFound, r.status)
	}
	require.Equal(t, http.StatusUnauthorized, mustDo(t, http.MethodPost, s.url+"/claims/"+id+"/reversal", "", nil).status)
	r := mustDoWith(t, http.MethodPost, s.url+"/claims/"+id+"/reversal", alpha, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "other", r.json(t)["reason"], "no body: reason other")
}

// In async mode a claim still queued cannot be reversed yet: 409 with
// Retry-After, and nothing changes.
func TestReversalOfAQueuedClaimWaits(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{rabbitURL: testenv.SharedRabbitMQURL()})
	require.Eventually(t, func() bool {
		return mustDo(t, http.MethodGet, s.url+"/readyz", "", nil).json(t)["rabbitmq"] == "ok"
	}, 10*time.Second, 10*time.Millisecond)
	queued := mustPost(t, s.url+"/claims", "application/json", `{"claim_id": "PAY-Q1", "lines": [`+reversalLine("1000000005")+`]}`)
	require.Equal(t, http.StatusAccepted, queued.status, string(queued.body))
	for _, ref := range []string{queued.json(t)["id"].(string)} {
		r := mustPost(t, s.url+"/claims/"+ref+"/reversal", "application/json", "")
		require.Equal(t, http.StatusConflict, r.status, string(r.body))
		require.Equal(t, "1", r.header.Get("Retry-After"))
	}
}

// A correction reverses the claim it replaces and stores itself, in one
// transaction; replacing a claim already replaced is a 409 naming the claim
// that replaced it, and a correction naming no claim of its sender's is a
// 422. Sent again under its claim_id, a correction replaces nothing more.
func TestCorrectionReplacesAClaim(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	first := mustPost(t, s.url+"/claims", "application/json", `{"claim_id": "PAY-C1", "lines": [`+reversalLine("1000000011")+`]}`)
	require.Equal(t, http.StatusCreated, first.status)
	firstID := first.json(t)["id"].(string)

	correction := `{"claim_id": "PAY-C2", "replaces": "PAY-C1", "lines": [` + reversalLine("1000000012") + `]}`
	second := mustPost(t, s.url+"/claims", "application/json", correction)
	require.Equal(t, http.StatusCreated, second.status, string(second.body))
	secondID := second.json(t)["id"].(string)
	require.Equal(t, firstID, second.json(t)["replaces"])
	old := mustDo(t, http.MethodGet, s.url+"/claims/"+firstID, "", nil).json(t)
	require.Equal(t, "reversed", old["status"])
	require.Equal(t, "replaced", old["reason"])
	require.Equal(t, secondID, old["replaced_by"])
	totals, _ := topTotals(t, s.url)
	require.Equal(t, map[string]string{"1000000012": "160"}, totals, "the replaced claim's provider has none left")

	again := mustPost(t, s.url+"/claims", "application/json", correction)
	require.Equal(t, http.StatusOK, again.status, "the same correction again is the stored one")
	require.Equal(t, secondID, again.json(t)["id"])

	third := mustPost(t, s.url+"/claims", "application/json",
		`{"claim_id": "PAY-C3", "replaces": "`+firstID+`", "lines": [`+reversalLine("1000000013")+`]}`)
	require.Equal(t, http.StatusConflict, third.status, string(third.body))
	require.Contains(t, third.json(t)["detail"], secondID)
	unknown := mustPost(t, s.url+"/claims", "application/json",
		`{"claim_id": "PAY-C4", "replaces": "PAY-NONE", "lines": [`+reversalLine("1000000014")+`]}`)
	require.Equal(t, http.StatusUnprocessableEntity, unknown.status, string(unknown.body))
	require.Contains(t, string(unknown.body), `"field":"replaces"`)
	totals, _ = topTotals(t, s.url)
	require.Equal(t, map[string]string{"1000000012": "160"}, totals, "refused corrections store nothing")
}
