package claim_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// Periods at month, year and ISO-week boundaries: Dec 31 and Jan 1 fall in
// the ISO week of the year they begin or end, week 53 where there is one.
func TestPeriodOfAtBoundaries(t *testing.T) {
	for date, want := range map[string][4]string{
		"2026-11-28": {"2026-11-28", "2026-W48", "2026-11", "2026"},
		"2026-12-31": {"2026-12-31", "2026-W53", "2026-12", "2026"}, // 2026 begins on a Thursday: 53 weeks
		"2027-01-01": {"2027-01-01", "2026-W53", "2027-01", "2027"},
		"2027-01-04": {"2027-01-04", "2027-W01", "2027-01", "2027"},
		"2020-12-31": {"2020-12-31", "2020-W53", "2020-12", "2020"},
		"2021-01-03": {"2021-01-03", "2020-W53", "2021-01", "2021"},
		"2024-12-30": {"2024-12-30", "2025-W01", "2024-12", "2024"}, // Monday of 2025's first week
		"2025-12-31": {"2025-12-31", "2026-W01", "2025-12", "2025"},
		"2024-02-29": {"2024-02-29", "2024-W09", "2024-02", "2024"},
	} {
		for i, w := range []claim.Window{claim.WindowDay, claim.WindowWeek, claim.WindowMonth, claim.WindowYear} {
			require.Equal(t, want[i], claim.PeriodOf(w, day(date)), "%s of %s", w, date)
		}
	}
}

func TestParsePeriod(t *testing.T) {
	now := day("2026-11-28")
	for _, c := range []struct {
		w      claim.Window
		in     string
		want   string
		wantOK bool
	}{
		{claim.WindowDay, "2026-11-28", "2026-11-28", true},
		{claim.WindowDay, "", "2026-11-28", true},
		{claim.WindowWeek, "", "2026-W48", true},
		{claim.WindowMonth, "", "2026-11", true},
		{claim.WindowYear, "", "2026", true},
		{claim.WindowAll, "", "", true},
		{claim.WindowWeek, "2026-W53", "2026-W53", true},
		{claim.WindowWeek, "2020-W53", "2020-W53", true},
		{claim.WindowWeek, "2025-W53", "", false}, // 2025 has 52 weeks
		{claim.WindowWeek, "2026-W00", "", false},
		{claim.WindowWeek, "2026-W7", "", false},
		{claim.WindowWeek, "2026-11", "", false},
		{claim.WindowDay, "2026-02-30", "", false},
		{claim.WindowDay, "2026-11", "", false},
		{claim.WindowDay, "28/11/2026", "", false},
		{claim.WindowMonth, "2026-13", "", false},
		{claim.WindowMonth, "2026-1", "", false},
		{claim.WindowMonth, "2026-11-28", "", false},
		{claim.WindowYear, "26", "", false},
		{claim.WindowYear, "2026-11", "", false},
		{claim.WindowAll, "2026", "", false},
		{claim.Window("decade"), "2020", "", false},
	} {
		got, err := claim.ParsePeriod(c.w, c.in, now)
		if !c.wantOK {
			require.Error(t, err, "%s %q", c.w, c.in)
			continue
		}
		require.NoError(t, err, "%s %q", c.w, c.in)
		require.Equal(t, c.want, got, "%s %q", c.w, c.in)
	}
}

func TestBoardKeys(t *testing.T) {
	require.Equal(t, "a", claim.AllTime.Key())
	require.True(t, claim.AllTime.IsAllTime())
	var keys []string
	for _, b := range claim.BoardsOf(day("2027-01-01"), "GRP-1") {
		require.False(t, b.IsAllTime())
		keys = append(keys, b.Key())
	}
	require.Equal(t, []string{"d:2027-01-01", "w:2026-W53", "m:2027-01", "y:2027", "a|g:GRP-1", "m:2027-01|g:GRP-1"}, keys)
}
