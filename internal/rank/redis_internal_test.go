package rank

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionDigits(t *testing.T) {
	for providers, want := range map[int64]int{
		0: 1, 100: 1, 1_200: 1, 1_201: 2, 10_000: 2, 1_000_000: 4, 1_010_000: 4, 1_200_001: 5, 10_000_000: 5, 1e12: 9,
	} {
		require.Equal(t, want, versionDigits(providers), "%d providers", providers)
	}
}
