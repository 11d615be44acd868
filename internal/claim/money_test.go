package claim_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

func TestParseCents(t *testing.T) {
	t.Parallel()
	accepted := []struct {
		in   string
		want claim.Cents
	}{
		{"$150.00 ", 15000},
		{"150.00", 15000},
		{"150", 15000},
		{"$1,234.50", 123450},
		{"150.5", 15050},
		{"0", 0},
		{"0.01", 1},
		{" $10.00 ", 1000},
		{"1,000,000", 100000000},
		{"100.0", 10000},
		{"999,999,999.99", 99999999999},
		{"007.10", 710},
	}
	for _, tc := range accepted {
		got, err := claim.ParseCents(tc.in)
		require.NoError(t, err, "input %q", tc.in)
		require.Equal(t, tc.want, got, "input %q", tc.in)
	}

	refused := []string{
		"", "  ", "$", "-1", "-0.01", "$-5", "1.234", "150.505", "1e2", "1E2",
		"NaN", "nan", "Inf", "+Inf", "-Inf", "abc", "12a", "1,23", "12,3456",
		",123", "1.", ".5", "1..2", "$$1", "1 000", "+5", "0x10", "1_000",
		"1000000000", "1,000,000,000.00", "１２",
	}
	for _, in := range refused {
		_, err := claim.ParseCents(in)
		require.Error(t, err, "input %q", in)
	}
}

func TestCentsString(t *testing.T) {
	t.Parallel()
	cases := map[claim.Cents]string{
		0:        "0.00",
		1:        "0.01",
		10:       "0.10",
		232000:   "2320.00",
		-1205:    "-12.05",
		-5:       "-0.05",
		12345678: "123456.78",
	}
	for c, want := range cases {
		require.Equal(t, want, c.String())
	}
}
