package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-redis/redis_rate/v10"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// mustPostWith posts a JSON body with extra headers.
func mustPostWith(t *testing.T, url, body string, header map[string]string) response {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range header {
		h[k] = v
	}
	return mustDoWith(t, http.MethodPost, url, h, strings.NewReader(body))
}

func mustTotals(t *testing.T, s stack) map[string]claim.Cents {
	t.Helper()
	top, err := s.store.TopProviders(context.Background(), 0, 100)
	require.NoError(t, err)
	out := map[string]claim.Cents{}
	for _, p := range top {
		out[p.ProviderNPI] = p.NetFee
	}
	return out
}

func TestIdempotencyKeyReplaysTheFirstAnswer(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	first := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": `"retry-1"`})
	require.Equal(t, http.StatusCreated, first.status, string(first.body))
	require.Empty(t, first.header.Get("Idempotency-Replayed"))

	// The bare form names the same key; the claim spelled differently is the same claim.
	respelled := strings.Replace(oldServicePayload, `"provider_fees": 100.0`, `"Provider Fees": "$100.00"`, 1)
	again := mustPostWith(t, s.url+"/claims/", respelled, map[string]string{"Idempotency-Key": "retry-1"})
	require.Equal(t, http.StatusCreated, again.status, string(again.body))
	require.Equal(t, "true", again.header.Get("Idempotency-Replayed"))
	require.Equal(t, first.json(t)["id"], again.json(t)["id"])
	require.Equal(t, first.header.Get("Location"), again.header.Get("Location"))

	other := strings.Replace(oldServicePayload, "D0180", "D0210", 1)
	reused := mustPostWith(t, s.url+"/claims", other, map[string]string{"Idempotency-Key": "retry-1"})
	require.Equal(t, http.StatusUnprocessableEntity, reused.status, string(reused.body))
	require.Contains(t, string(reused.body), "different claim")

	fresh := mustPostWith(t, s.url+"/claims", other, map[string]string{"Idempotency-Key": "retry-2"})
	require.Equal(t, http.StatusCreated, fresh.status)
	require.NotEqual(t, first.json(t)["id"], fresh.json(t)["id"])
}

func TestIdempotencyKeyMalformed(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	for _, key := range []string{`""`, `"unterminated`, `"a"b"`, strings.Repeat("k", 256), "tab\there", "naïve"} {
		res := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": key})
		require.Equal(t, http.StatusBadRequest, res.status, "key %q: %s", key, res.body)
		require.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
	}
	ok := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": strings.Repeat("k", 255)})
	require.Equal(t, http.StatusCreated, ok.status, "255 characters is the limit, not past it")
}

// Fifty copies of one request at once store one claim: the others are
// replays of it, or told to retry (409 with Retry-After) while it is in flight.
func TestConcurrentCopiesStoreOnce(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	withKey := strings.Replace(oldServicePayload, `"provider_fees": 100.0`, `"provider_fees": 175.25`, 1)
	withClaimID := `{"claim_id": "PAY-42", "lines": [` + strings.Replace(withKey, "1497775530", "1497775531", 1) + `]}`

	for name, tc := range map[string]struct {
		body   string
		header map[string]string
	}{
		"idempotency key": {withKey, map[string]string{"Idempotency-Key": "burst-1"}},
		"claim_id":        {withClaimID, nil},
		"both":            {strings.Replace(withClaimID, "PAY-42", "PAY-43", 1), map[string]string{"Idempotency-Key": "burst-2"}},
	} {
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			ids       = map[string]int{}
			statuses  = map[int]int{}
			retryHint = true
		)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := mustPostWith(t, s.url+"/claims", tc.body, tc.header)
				mu.Lock()
				defer mu.Unlock()
				statuses[res.status]++
				switch res.status {
				case http.StatusCreated, http.StatusOK:
					ids[res.json(t)["id"].(string)]++
				case http.StatusConflict:
					retryHint = retryHint && res.header.Get("Retry-After") != ""
				}
			}()
		}
		wg.Wait()
		require.Len(t, ids, 1, "%s: every success names the same claim: %v", name, statuses)
		require.True(t, retryHint, "%s: a 409 says when to retry", name)
		for status := range statuses {
			require.Contains(t, []int{http.StatusCreated, http.StatusOK, http.StatusConflict}, status, name)
		}
	}
	totals := mustTotals(t, s)
	require.Equal(t, claim.Cents(7525), totals["1497775530"], "counted once")
	require.Equal(t, claim.Cents(2*7525), totals["1497775531"], "PAY-42 and PAY-43 once each")
}

func TestClaimIDResubmissionReturnsTheStoredClaim(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	body := `{"claim_id": "PAY-7", "lines": [` + oldServicePayload + `]}`
	first := mustPost(t, s.url+"/claims", "application/json", body)
	require.Equal(t, http.StatusCreated, first.status, string(first.body))
	require.Equal(t, "PAY-7", first.json(t)["claim_id"])

	again := mustPost(t, s.url+"/claims", "application/json", body)
	require.Equal(t, http.StatusOK, again.status, string(again.body))
	require.JSONEq(t, string(first.body), string(again.body))

	// The flat form may carry it too.
	flat := strings.Replace(oldServicePayload, `{"service_date"`, `{"external_id": "PAY-7", "service_date"`, 1)
	third := mustPost(t, s.url+"/claims", "application/json", flat)
	require.Equal(t, http.StatusOK, third.status, string(third.body))
	require.Equal(t, first.json(t)["id"], third.json(t)["id"])

	bad := mustPost(t, s.url+"/claims", "application/json", `{"claim_id": "", "lines": [`+oldServicePayload+`]}`)
	require.Equal(t, http.StatusUnprocessableEntity, bad.status)

	// The same claim_id with other content is refused, not answered with the old claim.
	changed := strings.Replace(body, "D0180", "D0210", 1)
	reused := mustPost(t, s.url+"/claims", "application/json", changed)
	require.Equal(t, http.StatusUnprocessableEntity, reused.status, string(reused.body))
	require.Contains(t, string(reused.body), "claim_id")
	require.NotContains(t, string(reused.body), "3730189502")
}

func TestAPIKeysRequiredWhenConfigured(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-alpha", "k-beta"}})
	for _, auth := range []string{"", "Bearer wrong", "Basic k-alpha", "Bearer "} {
		res := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Authorization": auth})
		require.Equal(t, http.StatusUnauthorized, res.status, "auth %q", auth)
		require.Contains(t, res.header.Get("WWW-Authenticate"), "Bearer")
	}
	ok := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Authorization": "Bearer k-beta"})
	require.Equal(t, http.StatusCreated, ok.status)

	// Idempotency keys are scoped per client: the same key from two clients
	// names two requests.
	a := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Authorization": "Bearer k-alpha", "Idempotency-Key": "same"})
	b := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Authorization": "Bearer k-beta", "Idempotency-Key": "same"})
	require.Equal(t, http.StatusCreated, a.status)
	require.Equal(t, http.StatusCreated, b.status)
	require.NotEqual(t, a.json(t)["id"], b.json(t)["id"])
	require.Empty(t, b.header.Get("Idempotency-Replayed"))

	// So are claim_ids: another client's claim is never returned through one.
	withID := `{"claim_id": "SHARED-1", "lines": [` + oldServicePayload + `]}`
	ca := mustPostWith(t, s.url+"/claims", withID, map[string]string{"Authorization": "Bearer k-alpha"})
	cb := mustPostWith(t, s.url+"/claims", withID, map[string]string{"Authorization": "Bearer k-beta"})
	require.Equal(t, http.StatusCreated, ca.status)
	require.Equal(t, http.StatusCreated, cb.status, "a claim_id is the client's own")
	require.NotEqual(t, ca.json(t)["id"], cb.json(t)["id"])

	require.Equal(t, http.StatusOK, mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil).status, "lookups need no key")

	// A stored claim holds subscriber numbers (PHI): reading it needs a key too.
	claimURL := s.url + ok.header.Get("Location")
	for _, auth := range []string{"", "Bearer wrong"} {
		res := mustDoWith(t, http.MethodGet, claimURL, map[string]string{"Authorization": auth}, nil)
		require.Equal(t, http.StatusUnauthorized, res.status, "auth %q", auth)
		require.NotContains(t, string(res.body), "3730189502")
	}
	got := mustDoWith(t, http.MethodGet, claimURL, map[string]string{"Authorization": "Bearer k-beta"}, nil)
	require.Equal(t, http.StatusOK, got.status, "its sender reads it")
	require.Contains(t, string(got.body), "3730189502")

	// Another client's key reads nothing: the answer is that of an id never
	// stored, so it does not even learn that the claim exists.
	other := mustDoWith(t, http.MethodGet, claimURL, map[string]string{"Authorization": "Bearer k-alpha"}, nil)
	never := mustDoWith(t, http.MethodGet, s.url+"/claims/01a22487-af71-7a68-b316-000000000000", map[string]string{"Authorization": "Bearer k-alpha"}, nil)
	require.Equal(t, http.StatusNotFound, other.status)
	require.Equal(t, string(never.body), string(other.body))
	require.NotContains(t, string(other.body), "3730189502")
}

func TestPostgresUnavailableIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	s.store.Close()
	res := mustPost(t, s.url+"/claims", "application/json", oldServicePayload)
	require.Equal(t, http.StatusServiceUnavailable, res.status, string(res.body))
	require.NotEmpty(t, res.header.Get("Retry-After"))
	require.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
}
