package httpapi

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// An answer is encoded once per ranking read: the same slice gives the same
// bytes, any other slice (or source) is encoded anew.
func TestEncodedTopSharesOneReadsEncoding(t *testing.T) {
	var c encodedTop
	read := []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 12345}}
	first := c.encode(read, claim.SourceRedis)
	require.JSONEq(t, `{"top_providers":[{"provider_npi":"1000000001","total_net_fee":123.45}],"source":"redis"}`, string(first))
	again := c.encode(read, claim.SourceRedis)
	require.Same(t, &first[0], &again[0], "the same read's answer is not encoded again")

	next := []claim.ProviderTotal{{ProviderNPI: "1000000001", NetFee: 12346}} // another read
	require.Contains(t, string(c.encode(next, claim.SourceRedis)), "123.46")
	require.Contains(t, string(c.encode(next, claim.SourcePostgres)), `"source":"postgres"`)
	require.JSONEq(t, `{"top_providers":[],"source":"redis"}`, string(c.encode(nil, claim.SourceRedis)))
}
