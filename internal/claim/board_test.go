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

// Every key Board.Key writes reads back as its board; other keys do not.
func TestParseBoardKey(t *testing.T) {
	t.Parallel()
	date := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	for _, b := range append(claim.BoardsOf(date, "GRP:1|x"), claim.AllTime) {
		got, ok := claim.ParseBoardKey(b.Key())
		require.True(t, ok, b.Key())
		require.Equal(t, b, got)
	}
	for _, key := range []string{"", "d:", "d:2026-13-01", "w:2025-W53", "q:2026", "m:2026-11|g:", "a|g:", "x"} {
		_, ok := claim.ParseBoardKey(key)
		require.False(t, ok, key)
	}
}

// A board stays in the live ranking for its window's count of periods,
// the current one included, and leaves when the next period starts: at
// month, year and ISO-week boundaries (2026 has 53 weeks).
func TestRetention(t *testing.T) {
	t.Parallel()
	keep := claim.Retention{claim.WindowDay: 2, claim.WindowWeek: 2, claim.WindowMonth: 2, claim.WindowYear: 1}
	jan1 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		board claim.Board
		until time.Time
	}{
		{claim.Board{Window: claim.WindowDay, Period: "2026-12-31"}, time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)},
		{claim.Board{Window: claim.WindowWeek, Period: "2026-W53"}, time.Date(2027, 1, 11, 0, 0, 0, 0, time.UTC)},
		{claim.Board{Window: claim.WindowMonth, Period: "2026-12", PlanGroup: "G"}, time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)},
		{claim.Board{Window: claim.WindowYear, Period: "2026"}, jan1},
		{claim.Board{Window: claim.WindowAll, PlanGroup: "G"}, time.Time{}},
	} {
		require.Equal(t, c.until, keep.Until(c.board), c.board.Key())
		if !c.until.IsZero() {
			require.True(t, keep.Keeps(c.board, c.until.Add(-time.Nanosecond)), c.board.Key())
			require.False(t, keep.Keeps(c.board, c.until), c.board.Key())
		}
	}
	require.True(t, keep.Keeps(claim.Board{Window: claim.WindowAll, PlanGroup: "G"}, jan1.AddDate(50, 0, 0)))

	// Oldest bounds the same boards: a key of a window is kept exactly when
	// it sorts at or after its window's oldest.
	require.Equal(t, map[claim.Window]string{claim.WindowDay: "d:2026-12-31", claim.WindowWeek: "w:2026-W52", claim.WindowMonth: "m:2026-12",
		claim.WindowYear: "y:2027"}, keep.Oldest(jan1))
	none := claim.Retention{}.Oldest(jan1)
	require.Greater(t, "d:9999-12-31", "d:2026-12-31")
	require.Greater(t, none[claim.WindowDay], "d:9999-12-31", "a window keeping none sorts past all its boards")

	r, err := claim.ParseRetention(" day=7, year=10 ")
	require.NoError(t, err)
	require.Equal(t, claim.Retention{claim.WindowDay: 7, claim.WindowWeek: 15, claim.WindowMonth: 13, claim.WindowYear: 10}, r)
	require.Equal(t, "day=7,week=15,month=13,year=10", r.String())
	for _, bad := range []string{"all=3", "day=-1", "day", "week=x", "day=10001"} {
		_, err := claim.ParseRetention(bad)
		require.Error(t, err, bad)
	}
}
