package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// Pages of /top-providers list every provider once, in the order of the
// whole list, ties (equal totals) by NPI descending; a bad offset is a 400
// naming it.
func TestTopProvidersPages(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{})
	npis := loadkit.NPIPool(23)
	for i, npi := range npis {
		fee := 2 + i%4 // four totals, each shared by five or six providers
		body := fmt.Sprintf(`{"lines": [{"service_date": "2026-11-28", "submitted_procedure": "D0180", "plan_group": "G",
  "subscriber": "3730189502", "provider_npi": %q, "provider_fees": %d, "allowed_fees": 1, "member_coinsurance": 0,
  "member_copay": 0}]}`, npi, fee)
		require.Equal(t, http.StatusCreated, mustPost(t, s.url+"/claims", "application/json", body).status)
	}
	list := func(query string) []string {
		t.Helper()
		res := mustDo(t, http.MethodGet, s.url+"/top-providers?"+query, "", nil)
		require.Equal(t, http.StatusOK, res.status, string(res.body))
		require.Equal(t, "redis", res.json(t)["source"])
		var out []string
		for _, p := range res.json(t)["top_providers"].([]any) {
			p := p.(map[string]any)
			out = append(out, fmt.Sprintf("%v=%s", p["total_net_fee"], p["provider_npi"]))
		}
		return out
	}
	whole := list("limit=100")
	require.Len(t, whole, 23)
	for i := 1; i < len(whole); i++ { // total descending, then NPI descending
		a, b := strings.Split(whole[i-1], "="), strings.Split(whole[i], "=")
		require.True(t, a[0] > b[0] || (a[0] == b[0] && a[1] > b[1]), "%s before %s", whole[i-1], whole[i])
	}
	for _, limit := range []int{1, 4, 5, 7} {
		var paged []string
		for offset := 0; offset < 30; offset += limit {
			paged = append(paged, list(fmt.Sprintf("limit=%d&offset=%d", limit, offset))...)
		}
		require.Equal(t, whole, paged, "pages of %d", limit)
	}
	require.Empty(t, list("offset=10000"))

	for _, q := range []string{"offset=-1", "offset=10001", "offset=x", "offset=1.5"} {
		res := mustDo(t, http.MethodGet, s.url+"/top-providers?"+q, "", nil)
		require.Equal(t, http.StatusBadRequest, res.status, q)
		require.Equal(t, "offset", res.json(t)["errors"].([]any)[0].(map[string]any)["field"], q)
	}
}

// GET /providers/{npi} answers a provider's total, its rank in the order of
// /top-providers (ties too), and its claims, which a reversal takes away; an
// NPI that is not ten digits is a 400 naming npi; a provider without claims
// a 404.
func TestProviderStanding(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{})
	npis := loadkit.NPIPool(9)
	var last string
	for i, npi := range npis {
		for range 1 + i%2 { // odd ones have two claims
			body := fmt.Sprintf(`{"lines": [{"service_date": "2026-11-28", "submitted_procedure": "D0180", "plan_group": "G",
  "subscriber": "3730189502", "provider_npi": %q, "provider_fees": %d, "allowed_fees": 1, "member_coinsurance": 0,
  "member_copay": 0}]}`, npi, 2+i%3)
			res := mustPost(t, s.url+"/claims", "application/json", body)
			require.Equal(t, http.StatusCreated, res.status)
			last = res.json(t)["id"].(string)
		}
	}
	res := mustDo(t, http.MethodGet, s.url+"/top-providers?limit=100", "", nil)
	require.Equal(t, http.StatusOK, res.status)
	for i, p := range res.json(t)["top_providers"].([]any) {
		p := p.(map[string]any)
		got := mustDo(t, http.MethodGet, s.url+"/providers/"+p["provider_npi"].(string), "", nil)
		require.Equal(t, http.StatusOK, got.status, string(got.body))
		body := got.json(t)
		require.Equal(t, float64(i+1), body["rank"], p["provider_npi"])
		require.Equal(t, p["total_net_fee"], body["total_net_fee"])
		require.Equal(t, "redis", body["source"])
		k := slices.Index(npis, p["provider_npi"].(string))
		require.Equal(t, float64(1+k%2), body["claims"])
	}

	// The last claim was npis[8]'s only one: reversed, the provider has none.
	require.Equal(t, http.StatusOK, mustPost(t, s.url+"/claims/"+last+"/reversal", "application/json", `{}`).status)
	got := mustDo(t, http.MethodGet, s.url+"/providers/"+npis[8], "", nil)
	require.Equal(t, http.StatusNotFound, got.status, string(got.body))
	require.Equal(t, http.StatusNotFound, mustDo(t, http.MethodGet, s.url+"/providers/1999999999", "", nil).status)
	for _, bad := range []string{"123", "14977755301", "abcdefghij"} {
		got := mustDo(t, http.MethodGet, s.url+"/providers/"+bad, "", nil)
		require.Equal(t, http.StatusBadRequest, got.status, bad)
		require.Equal(t, "npi", got.json(t)["errors"].([]any)[0].(map[string]any)["field"])
	}
}
