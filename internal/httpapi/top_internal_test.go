package httpapi

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// An answer is encoded once while the ranking reads give the same providers
// and totals from the same source; any change of either is encoded anew.
func TestEncodedTopReusedWhileTheTopIsUnchanged(t *testing.T) {
	var c encodedTop
	read := []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 12345, Version: 3}, {ProviderNPI: "1000000002", NetFee: 5}}
	first := c.encode(read, claim.SourceRedis)
	require.JSONEq(t, `{"top_providers":[{"provider_npi":"1000000001","total_net_fee":123.45},{"provider_npi":"1000000002","total_net_fee":0.05}],"source":"redis"}`, string(first))
	again := c.encode(read, claim.SourceRedis)
	require.Same(t, &first[0], &again[0], "the same read's answer is not encoded again")
	equal := []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 12345, Version: 4}, {ProviderNPI: "1000000002", NetFee: 5}}
	again = c.encode(equal, claim.SourceRedis)
	require.Same(t, &first[0], &again[0], "another read of the same top is not encoded again")

	for _, changed := range [][]claim.ProviderTotal{
		{{ProviderNPI: "1000000001", NetFee: 12346}, {ProviderNPI: "1000000002", NetFee: 5}},
		{{ProviderNPI: "1000000001", NetFee: 12345}, {ProviderNPI: "1000000003", NetFee: 5}},
		{{ProviderNPI: "1000000001", NetFee: 12345}},
	} {
		body := c.encode(changed, claim.SourceRedis)
		require.NotEqual(t, string(first), string(body))
		require.Contains(t, string(body), changed[len(changed)-1].ProviderNPI)
	}
	require.Contains(t, string(c.encode(read, claim.SourcePostgres)), `"source":"postgres"`)
	require.JSONEq(t, `{"top_providers":[],"source":"redis"}`, string(c.encode(nil, claim.SourceRedis)))
	require.JSONEq(t, `{"top_providers":[],"source":"postgres"}`, string(c.encode(nil, claim.SourcePostgres)))
}

// queryParam answers what net/url's Query().Get does, for any query.
func TestQueryParamAsNetURL(t *testing.T) {
	for _, q := range []string{
		"", "limit=10", "limit=", "limit", "a=1&limit=7&limit=8", "&&limit=3&", "limitx=2&limit=4",
		"limit=1%30", "limit=+5", "a=1;limit=2", "limit=2;a=1", "li%6dit=9", "=5&limit=6", "LIMIT=5",
	} {
		u, err := url.Parse("http://h/top-providers?" + q)
		require.NoError(t, err)
		require.Equal(t, u.Query().Get("limit"), queryParam(u, "limit"), q)
	}
}
