package loadkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

func TestNPIPoolIsDistinctValidAndStable(t *testing.T) {
	pool := NPIPool(5000)
	seen := map[string]bool{}
	for _, npi := range pool {
		require.Len(t, npi, 10)
		require.True(t, claim.ValidNPIChecksum(npi), "%s must pass claimd's VALIDATE_NPI_CHECKSUM", npi)
		require.False(t, seen[npi], "%s drawn twice", npi)
		seen[npi] = true
	}
	assert.Equal(t, pool[:10], NPIPool(10), "the pool must not depend on its size, so baselines of runs agree")
}

func TestZipfStaysInRangeAndIsSkewed(t *testing.T) {
	const n = 1000
	g := NewGenerator(42, NPIPool(n), 1.1, 8)
	counts := make([]int, n)
	for range 100_000 {
		i := g.NPIIndex()
		require.GreaterOrEqual(t, i, 0)
		require.Less(t, i, n)
		counts[i]++
	}
	// Zipf: the head provider is drawn far more often than one in the middle.
	assert.Greater(t, counts[0], 10*counts[n/2]+1)
	assert.Greater(t, counts[0], counts[1])

	one := NewGenerator(1, NPIPool(1), 1.1, 8)
	for range 100 {
		require.Equal(t, 0, one.NPIIndex(), "a pool of one has only index 0")
	}
}

func TestClaimsHaveRealisticExactMoney(t *testing.T) {
	g := NewGenerator(7, NPIPool(100), 1.1, 8)
	lineCounts := map[int]int{}
	var anyCoins, anyCopay, anyCents, anyQuadrant bool
	for i := range 5000 {
		c := g.Claim("x-" + string(rune('a'+i%26)))
		require.GreaterOrEqual(t, len(c.Lines), 1)
		require.LessOrEqual(t, len(c.Lines), 8)
		lineCounts[len(c.Lines)]++
		var sum int64
		for _, l := range c.Lines {
			require.GreaterOrEqual(t, l.Fees, int64(MinFeeCents))
			require.LessOrEqual(t, l.Fees, int64(MaxFeeCents))
			require.LessOrEqual(t, l.Allowed, l.Fees, "allowed never above the fee")
			require.GreaterOrEqual(t, l.Allowed*10, l.Fees*4-10, "allowed is at least about 40%% of the fee")
			require.LessOrEqual(t, l.Coinsurance, l.Allowed/5, "coinsurance is a small share")
			require.LessOrEqual(t, l.Copay, int64(50_00))
			require.GreaterOrEqual(t, l.NetFee(), int64(0))
			require.Equal(t, l.Fees+l.Coinsurance+l.Copay-l.Allowed, l.NetFee())
			anyCoins = anyCoins || l.Coinsurance > 0
			anyCopay = anyCopay || l.Copay > 0
			anyCents = anyCents || l.Fees%100 != 0
			anyQuadrant = anyQuadrant || l.Quadrant != ""
			sum += l.NetFee()
		}
		require.Equal(t, sum, c.NetFee())
	}
	assert.Len(t, lineCounts, 8, "every claim size from 1 to 8 occurs")
	assert.True(t, anyCoins && anyCopay && anyCents && anyQuadrant)
}

// The body must carry every amount as an exact decimal string, and claimd's
// own parser must read it back to the same cents and the same net fee.
func TestClaimJSONRoundTripsThroughClaimdsParser(t *testing.T) {
	g := NewGenerator(3, NPIPool(50), 1.2, 8)
	for i := range 500 {
		c := g.Claim("cb-test-" + string(rune('A'+i%26)))
		body := c.JSON()

		var raw map[string]any
		require.NoError(t, json.Unmarshal(body, &raw))
		for _, l := range raw["lines"].([]any) {
			for _, f := range []string{"provider_fees", "allowed_fees", "member_coinsurance", "member_copay"} {
				_, isString := l.(map[string]any)[f].(string)
				require.True(t, isString, "%s must be sent as a string, never a float", f)
			}
		}

		in, err := claim.DecodeJSON(bytes.NewReader(body))
		require.NoError(t, err)
		lines, err := claim.Parse(in, append(claim.DefaultRules(), claim.NPIChecksum))
		require.NoError(t, err)
		require.Equal(t, c.ExternalID, in.ExternalIDText())
		require.Len(t, lines, len(c.Lines))
		var sum int64
		for j, l := range lines {
			require.Equal(t, c.Lines[j].NetFee(), int64(l.NetFee()))
			require.Equal(t, c.Lines[j].Allowed, int64(l.AllowedFees))
			sum += int64(l.NetFee())
		}
		require.Equal(t, c.NetFee(), sum)
	}
}

func TestGeneratorIsReproducible(t *testing.T) {
	a := NewGenerator(9, NPIPool(100), 1.1, 8)
	b := NewGenerator(9, NPIPool(100), 1.1, 8)
	for range 100 {
		require.Equal(t, a.Claim("id"), b.Claim("id"))
	}
}

// The hand-written body is json.Marshal's, byte for byte; text that needs
// escaping goes through json.Marshal.
func TestClaimJSONIsMarshalsOutput(t *testing.T) {
	gen := NewGenerator(3, NPIPool(50), 1.1, 8)
	for i := range 500 {
		c := gen.Claim(fmt.Sprintf("run-%d", i))
		if i%7 == 0 {
			c.ExternalID = ""
		}
		require.Equal(t, string(c.marshalJSON()), string(c.JSON()))
	}
	odd := gen.Claim(`quote"<&>` + "\u00e9")
	require.Equal(t, string(odd.marshalJSON()), string(odd.JSON()))
	require.True(t, json.Valid(odd.JSON()))
}

func TestZeroPadded(t *testing.T) {
	for _, n := range []int64{0, 7, 42, 9999, 10_000, 1234567890, 9_999_999_999} {
		for _, w := range []int{4, 10} {
			require.Equal(t, fmt.Sprintf("%0*d", w, n), zeroPadded(n, w))
		}
	}
}
