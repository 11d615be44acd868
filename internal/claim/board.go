package claim

import (
	"fmt"
	"strconv"
	"time"
)

// A Window is the span of service dates a board counts: one day, ISO week,
// month or year, or all time.
type Window string

// The windows.
const (
	WindowAll   Window = "all"
	WindowDay   Window = "day"
	WindowWeek  Window = "week"
	WindowMonth Window = "month"
	WindowYear  Window = "year"
)

// Windows are every window, all first.
var Windows = []Window{WindowAll, WindowDay, WindowWeek, WindowMonth, WindowYear}

// A Board is one ranking of providers: by the lines of one window's period
// (of their service dates), of one plan/group or of all of them. The
// all-time board of all plans is the ranking /top-providers answers by
// default.
type Board struct {
	Window    Window
	Period    string // "2026-11-28", "2026-W48", "2026-11", "2026"; "" for all
	PlanGroup string // "" for every plan/group
}

// AllTime is the default board: all time, every plan/group.
var AllTime = Board{Window: WindowAll}

// IsAllTime says whether b is the default board.
func (b Board) IsAllTime() bool { return b == AllTime }

// Key names the board in storage: "d:2026-11-28", "w:2026-W48",
// "m:2026-11", "y:2026" or "a", then "|g:" and the plan/group for a
// segment. The SQL of migration 00011 writes the same keys.
func (b Board) Key() string {
	k := "a"
	switch b.Window {
	case WindowDay:
		k = "d:" + b.Period
	case WindowWeek:
		k = "w:" + b.Period
	case WindowMonth:
		k = "m:" + b.Period
	case WindowYear:
		k = "y:" + b.Period
	}
	if b.PlanGroup != "" {
		k += "|g:" + b.PlanGroup
	}
	return k
}

// PeriodOf is the period of window w that date falls in (UTC).
func PeriodOf(w Window, date time.Time) string {
	date = date.UTC()
	switch w {
	case WindowDay:
		return date.Format(time.DateOnly)
	case WindowWeek:
		year, week := date.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", year, week)
	case WindowMonth:
		return date.Format("2006-01")
	case WindowYear:
		return date.Format("2006")
	}
	return ""
}

// ParsePeriod checks that period names a period of window w, in its form
// ("2026-11-28", "2026-W48", "2026-11", "2026"), and returns it as PeriodOf
// writes it. An empty period is the current one (UTC at now); the all-time
// window takes none.
func ParsePeriod(w Window, period string, now time.Time) (string, error) {
	if period == "" {
		return PeriodOf(w, now), nil
	}
	var (
		t   time.Time
		err error
	)
	switch w {
	case WindowAll:
		return "", fmt.Errorf("window all has no periods")
	case WindowDay:
		t, err = time.Parse(time.DateOnly, period)
	case WindowMonth:
		t, err = time.Parse("2006-01", period)
	case WindowYear:
		t, err = time.Parse("2006", period)
	case WindowWeek:
		t, err = parseISOWeek(period)
	default:
		return "", fmt.Errorf("unknown window %q", w)
	}
	if err != nil || PeriodOf(w, t) != period {
		return "", fmt.Errorf("%q is not a %s (%s)", period, w, periodForm[w])
	}
	return period, nil
}

// periodForm shows each window's form of a period.
var periodForm = map[Window]string{WindowDay: "YYYY-MM-DD", WindowWeek: "YYYY-Www, an ISO week",
	WindowMonth: "YYYY-MM", WindowYear: "YYYY"}

// parseISOWeek reads "YYYY-Www" as the Monday of that ISO week.
func parseISOWeek(s string) (time.Time, error) {
	if len(s) != 8 || s[4:6] != "-W" {
		return time.Time{}, fmt.Errorf("not YYYY-Www")
	}
	year, err1 := strconv.Atoi(s[:4])
	week, err2 := strconv.Atoi(s[6:])
	if err1 != nil || err2 != nil || week < 1 || week > 53 {
		return time.Time{}, fmt.Errorf("not YYYY-Www")
	}
	// January 4th is always in week 1; its week's Monday starts week 1.
	jan4 := time.Date(year, time.January, 4, 0, 0, 0, 0, time.UTC)
	monday := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
	return monday.AddDate(0, 0, 7*(week-1)), nil
}

// BoardsOf are the boards a line of plan/group plan, served on date, counts
// toward besides AllTime: the day, week, month and year of its date, and
// its plan/group's all-time and month boards.
func BoardsOf(date time.Time, plan string) []Board {
	month := PeriodOf(WindowMonth, date)
	return []Board{
		{Window: WindowDay, Period: PeriodOf(WindowDay, date)},
		{Window: WindowWeek, Period: PeriodOf(WindowWeek, date)},
		{Window: WindowMonth, Period: month},
		{Window: WindowYear, Period: PeriodOf(WindowYear, date)},
		{Window: WindowAll, PlanGroup: plan},
		{Window: WindowMonth, Period: month, PlanGroup: plan},
	}
}

// SegmentWindows are the windows a plan/group has boards of.
var SegmentWindows = []Window{WindowAll, WindowMonth}
