package httpapi

import (
	"bytes"
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

// appendProvider writes what encodeJSON writes of a providerResponse, with
// negative, zero and large totals and a provider to escape.
func TestAppendProviderIsTheJSONEncoding(t *testing.T) {
	t.Parallel()
	for _, st := range []claim.Standing{
		{ProviderNPI: "1234567890", NetFee: 12345, Rank: 1, Claims: 3},
		{ProviderNPI: "0000000001", NetFee: -5, Rank: 10_000, Claims: 0},
		{ProviderNPI: "9999999999", NetFee: claim.MaxTotal, Rank: 1 << 40, Claims: 1 << 33},
		{ProviderNPI: "\"<\u00e9>\\", NetFee: 0, Rank: 2, Claims: 1},
	} {
		for _, source := range []claim.Source{claim.SourceRedis, claim.SourcePostgres} {
			var want bytes.Buffer
			encodeJSON(&want, providerResponse{ProviderNPI: st.ProviderNPI, TotalNetFee: money(st.NetFee),
				Rank: st.Rank, Claims: st.Claims, Source: string(source)})
			require.Equal(t, want.String(), string(appendProvider(nil, st, source)))
		}
	}
}
