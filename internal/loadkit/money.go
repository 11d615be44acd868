package loadkit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/claim-process/claim-process/internal/claim"
)

// FormatCents writes cents as claimd writes money: "123.45", "-0.05".
func FormatCents(c int64) string { return claim.Cents(c).String() }

// ParseCents reads an amount with at most two decimals ("2320.00", "7.5",
// "-12.05") into cents, digit by digit, never through a float.
func ParseCents(s string) (int64, error) {
	return parseCents(s, false)
}

// ParseExactCents is ParseCents for money as the API must write it: a
// number with exactly two decimals.
func ParseExactCents(s string) (int64, error) {
	return parseCents(s, true)
}

func parseCents(s string, exact bool) (int64, error) {
	digits, neg := strings.CutPrefix(s, "-")
	whole, frac, _ := strings.Cut(digits, ".")
	if whole == "" || !allDigits(whole) || !allDigits(frac) || len(frac) > 2 || (exact && len(frac) != 2) {
		if exact {
			return 0, fmt.Errorf("amount %q is not a number with two decimals", s)
		}
		return 0, fmt.Errorf("amount %q is not a decimal with at most two places", s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > (1<<63-1-99)/100 {
		return 0, fmt.Errorf("amount %q is out of range", s)
	}
	f, _ := strconv.ParseInt((frac + "00")[:2], 10, 64) // two ASCII digits
	c := w*100 + f
	if neg {
		c = -c
	}
	return c, nil
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
