package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// /top-providers and /providers/{npi} answer a period's board, or a
// plan/group's, with window, period and plan_group; a wrong one is a 400
// naming it.
func TestBoardLookups(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{})
	npis := loadkit.NPIPool(3)
	post := func(npi, date, plan string, fee int) {
		t.Helper()
		body := fmt.Sprintf(`{"lines": [{"service_date": %q, "submitted_procedure": "D0180", "plan_group": %q,
  "subscriber": "3730189502", "provider_npi": %q, "provider_fees": %d, "allowed_fees": 0, "member_coinsurance": 0,
  "member_copay": 0}]}`, date, plan, npi, fee)
		res := mustPost(t, s.url+"/claims", "application/json", body)
		require.Equal(t, http.StatusCreated, res.status, string(res.body))
	}
	post(npis[0], "2020-12-31", "G 1", 10)
	post(npis[0], "2021-01-01", "G 1", 20)
	post(npis[1], "2021-01-01", "G2", 25)
	post(npis[2], "2020-11-28", "G2", 100)

	top := func(query string) (list []string, source string) {
		t.Helper()
		res := mustDo(t, http.MethodGet, s.url+"/top-providers?"+query, "", nil)
		require.Equal(t, http.StatusOK, res.status, string(res.body))
		body := res.json(t)
		for _, p := range body["top_providers"].([]any) {
			p := p.(map[string]any)
			list = append(list, fmt.Sprintf("%s=%v", p["provider_npi"], p["total_net_fee"]))
		}
		return list, body["source"].(string)
	}
	got, source := top("window=month&period=2021-01")
	require.Equal(t, []string{npis[1] + "=25", npis[0] + "=20"}, got)
	require.Equal(t, "postgres", source, "the boards are kept in Postgres")
	got, _ = top("window=week&period=2020-W53") // Dec 31 and Jan 1
	require.Equal(t, []string{npis[0] + "=30", npis[1] + "=25"}, got)
	got, _ = top("window=year&period=2020")
	require.Equal(t, []string{npis[2] + "=100", npis[0] + "=10"}, got)
	got, _ = top("plan_group=" + url.QueryEscape("G 1"))
	require.Equal(t, []string{npis[0] + "=30"}, got)
	got, _ = top("window=month&period=2020-11&plan_group=G2&limit=1&offset=0")
	require.Equal(t, []string{npis[2] + "=100"}, got)
	got, _ = top("window=day&period=2020-01-01")
	require.Empty(t, got)
	got, source = top("window=all")
	require.Len(t, got, 3)
	require.Equal(t, "redis", source, "the all-time board of every plan is Redis's")

	rank := func(npi, query string) map[string]any {
		t.Helper()
		res := mustDo(t, http.MethodGet, s.url+"/providers/"+npi+"?"+query, "", nil)
		require.Equal(t, http.StatusOK, res.status, string(res.body))
		return res.json(t)
	}
	r := rank(npis[1], "window=week&period=2020-W53")
	require.Equal(t, float64(2), r["rank"])
	require.Equal(t, float64(25), r["total_net_fee"])
	require.Equal(t, float64(1), r["claims"])
	r = rank(npis[0], "window=week&period=2020-W53")
	require.Equal(t, float64(1), r["rank"])
	require.Equal(t, float64(2), r["claims"])
	res := mustDo(t, http.MethodGet, s.url+"/providers/"+npis[2]+"?window=month&period=2021-01", "", nil)
	require.Equal(t, http.StatusNotFound, res.status, "no claims in that board")

	for query, param := range map[string]string{
		"window=decade":                        "window",
		"window=month&period=2026-W48":         "period",
		"window=week&period=2025-W53":          "period",
		"window=day&period=2026-02-30":         "period",
		"period=2026":                          "period",
		"window=day&plan_group=G2":             "plan_group",
		"window=year&period=2026&plan_group=X": "plan_group",
		"plan_group=%FF":                       "plan_group",
		"plan_group=a%00b":                     "plan_group",
	} {
		for _, path := range []string{"/top-providers?", "/providers/" + npis[0] + "?"} {
			res := mustDo(t, http.MethodGet, s.url+path+query, "", nil)
			require.Equal(t, http.StatusBadRequest, res.status, path+query)
			require.Equal(t, param, res.json(t)["errors"].([]any)[0].(map[string]any)["field"], path+query)
		}
	}
}
