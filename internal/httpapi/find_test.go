package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// findLine is a line of provider npi on date, net fee 1.00.
func findLine(npi, date string) string {
	return fmt.Sprintf(`{"service_date": %q, "submitted_procedure": "D0180", "plan_group": "GRP-1", "subscriber": "3730189502",
  "provider_npi": %q, "provider_fees": 2.00, "allowed_fees": 1.00, "member_coinsurance": 0, "member_copay": 0}`, date, npi)
}

// A client finds its claims by its own claim_id, or by provider and service
// dates, newest first, a page at a time with nothing listed twice; never
// another client's, and never a subscriber number.
func TestFindClaims(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-alpha", "k-beta"}})
	alpha := map[string]string{"Authorization": "Bearer k-alpha"}
	beta := map[string]string{"Authorization": "Bearer k-beta"}
	npis := loadkit.NPIPool(2)
	p, other := npis[0], npis[1]

	var ids []string // alpha's claims with a line of p, oldest first
	for i := range 5 {
		body := fmt.Sprintf(`{"claim_id": "PAY-%d", "lines": [%s, %s]}`, i,
			findLine(p, fmt.Sprintf("2026-11-%02d", 26+i)), findLine(p, "2026-01-01"))
		posted := mustPostWith(t, s.url+"/claims", body, alpha)
		require.Equal(t, http.StatusCreated, posted.status, string(posted.body))
		ids = append(ids, posted.json(t)["id"].(string))
	}
	require.Equal(t, http.StatusCreated, mustPostWith(t, s.url+"/claims",
		`{"claim_id": "PAY-X", "lines": [`+findLine(other, "2026-11-27")+`]}`, alpha).status)
	require.Equal(t, http.StatusCreated, mustPostWith(t, s.url+"/claims",
		`{"claim_id": "PAY-0", "lines": [`+findLine(p, "2026-11-27")+`]}`, beta).status)

	find := func(who map[string]string, query string) response {
		t.Helper()
		return mustDoWith(t, http.MethodGet, s.url+"/claims?"+query, who, nil)
	}
	listed := func(r response) (got []string, next string) {
		t.Helper()
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.NotContains(t, string(r.body), "3730189502", "no subscriber number in list form")
		require.NotContains(t, string(r.body), "subscriber")
		body := r.json(t)
		for _, c := range body["claims"].([]any) {
			got = append(got, c.(map[string]any)["id"].(string))
		}
		next, _ = body["next_cursor"].(string)
		return got, next
	}

	got, next := listed(find(alpha, "claim_id=PAY-3"))
	require.Equal(t, []string{ids[3]}, got)
	require.Empty(t, next)
	got, _ = listed(find(beta, "claim_id=PAY-3"))
	require.Empty(t, got, "another client's claim_id finds nothing")

	// Pages of two, newest first: 4 3, 2 1, 0.
	var all []string
	query := "provider_npi=" + p + "&limit=2"
	for page := 0; ; page++ {
		require.Less(t, page, 5)
		got, next = listed(find(alpha, query))
		all = append(all, got...)
		if next == "" {
			break
		}
		query = "provider_npi=" + p + "&limit=2&cursor=" + url.QueryEscape(next)
	}
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, all, "each claim once, newest first")

	got, _ = listed(find(alpha, "provider_npi="+p+"&from=2026-11-27&to=2026-11-28"))
	require.Equal(t, []string{ids[2], ids[1]}, got, "a line's service date within from and to, both included")
	got, _ = listed(find(alpha, "provider_npi="+p+"&from=2026-01-01&to=2026-01-01"))
	require.Len(t, got, 5, "any line of the provider counts")
	got, _ = listed(find(beta, "provider_npi="+p))
	require.Len(t, got, 1, "beta sees its own claim only")
}

// A wrong parameter is a 400 naming it.
func TestFindClaimsBadParameters(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{})
	for query, param := range map[string]string{
		"":                                  "provider_npi",
		"provider_npi=123":                  "provider_npi",
		"provider_npi=1497775530&limit=0":   "limit",
		"provider_npi=1497775530&limit=101": "limit",
		"provider_npi=1497775530&from=2026-13-01":               "from",
		"provider_npi=1497775530&to=yesterday":                  "to",
		"provider_npi=1497775530&from=2026-12-02&to=2026-12-01": "from",
		"provider_npi=1497775530&cursor=page2":                  "cursor",
		"claim_id=PAY-1&provider_npi=1497775530":                "claim_id",
		"claim_id=PAY-1&limit=5":                                "limit",
		"claim_id=":                                             "claim_id",
		"claim_id=%00":                                          "claim_id",
		"claim_id=%FF":                                          "claim_id",
	} {
		r := mustDo(t, http.MethodGet, s.url+"/claims?"+query, "", nil)
		require.Equal(t, http.StatusBadRequest, r.status, query)
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), query)
		body := r.json(t)
		require.Equal(t, "urn:claim-process:problem:invalid-parameter", body["type"], query)
		require.Equal(t, param, body["errors"].([]any)[0].(map[string]any)["field"], query)
	}
}

// An id that is not storable text (a NUL, bytes that are not UTF-8) names
// no claim: 404, never a 500 from Postgres refusing it.
func TestClaimIDsThatAreNotText(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{})
	for _, id := range []string{"%00", "a%00b", "%FF", "%C3%28"} {
		res := mustPost(t, s.url+"/claims/"+id+"/reversal", "application/json", `{}`)
		require.Equal(t, http.StatusNotFound, res.status, "%s: %s", id, res.body)
		res = mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil)
		require.Equal(t, http.StatusNotFound, res.status, "%s: %s", id, res.body)
	}
}
