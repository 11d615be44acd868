package claim

import (
	"errors"
	"strconv"
	"strings"
)

// Cents is an amount of money in US cents. Every amount in the service is
// carried as Cents, from parsing to the Redis score, so sums are exact.
type Cents int64

// MaxAmount bounds a single money field, so that even a claim of MaxLines
// lines moves a provider's total by far less than MaxTotal.
const MaxAmount Cents = 99_999_999_999 // $999,999,999.99

// MaxTotal bounds a provider's total net fee, up and down: 2^53-1 cents
// ($90,071,992,547,409.91), the largest integer a Redis score (a double)
// holds exactly, so the ranking orders totals exactly. A claim that would
// take a total past it is refused.
const MaxTotal Cents = 1<<53 - 1

var (
	errMoneyEmpty     = errors.New("is empty")
	errMoneyNegative  = errors.New("must not be negative")
	errMoneyPrecision = errors.New("has more than two decimals")
	errMoneyTooLarge  = errors.New("is larger than 999,999,999.99")
	errMoneySyntax    = errors.New(`is not an amount of money (expected e.g. "150.00", "$1,234.50" or 150.5)`)
	// The errors name no value: a misplaced column could put PHI where money belongs.
)

// ParseCents reads a decimal amount of dollars straight into cents, digit by
// digit, never through a float. It accepts surrounding spaces, one leading "$",
// thousands separators in their proper places, and at most two decimals:
// "$150.00 ", "150", "$1,234.50", "150.5". Signs, exponents, NaN, Inf and
// anything else are refused.
func ParseCents(s string) (Cents, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errMoneyEmpty
	}
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "$-") || strings.HasPrefix(s, "($") {
		return 0, errMoneyNegative
	}
	s = strings.TrimPrefix(s, "$")

	whole, frac, hasPoint := strings.Cut(s, ".")
	if hasPoint && frac == "" || whole == "" {
		return 0, errMoneySyntax
	}
	if !allDigits(frac) {
		return 0, errMoneySyntax
	}
	if len(frac) > 2 {
		return 0, errMoneyPrecision
	}
	digits, ok := stripThousands(whole)
	if !ok {
		return 0, errMoneySyntax
	}
	digits = strings.TrimLeft(digits, "0")
	if len(digits) > 9 {
		return 0, errMoneyTooLarge
	}
	var dollars int64
	if digits != "" {
		d, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return 0, errMoneySyntax
		}
		dollars = d
	}
	frac = (frac + "00")[:2]
	cents, _ := strconv.ParseInt(frac, 10, 64) // two ASCII digits: cannot fail
	return Cents(dollars*100 + cents), nil
}

// stripThousands removes commas from the integer part when they separate
// groups of exactly three digits ("1,234,567"); any other comma is an error.
func stripThousands(whole string) (string, bool) {
	if !strings.Contains(whole, ",") {
		return whole, allDigits(whole)
	}
	groups := strings.Split(whole, ",")
	if len(groups[0]) == 0 || len(groups[0]) > 3 || !allDigits(groups[0]) {
		return "", false
	}
	for _, g := range groups[1:] {
		if len(g) != 3 || !allDigits(g) {
			return "", false
		}
	}
	return strings.Join(groups, ""), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String renders the amount with exactly two decimals ("2320.00", "-12.05"),
// the form used for money in every response.
func (c Cents) String() string {
	sign := ""
	u := uint64(c)
	if c < 0 {
		sign = "-"
		u = uint64(-c)
	}
	frac := u % 100
	s := sign + strconv.FormatUint(u/100, 10) + "."
	if frac < 10 {
		s += "0"
	}
	return s + strconv.FormatUint(frac, 10)
}
