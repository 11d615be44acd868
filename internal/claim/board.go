package claim

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
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

// ParseBoardKey reads a key written by Board.Key; ok is false for one it
// does not write.
func ParseBoardKey(key string) (b Board, ok bool) {
	key, plan, segment := strings.Cut(key, "|g:")
	if segment {
		if plan == "" {
			return Board{}, false
		}
		b.PlanGroup = plan
	}
	if key == "a" {
		b.Window = WindowAll
		return b, true
	}
	prefix, period, found := strings.Cut(key, ":")
	if !found {
		return Board{}, false
	}
	for w, p := range windowPrefix {
		if p == prefix {
			b.Window = w
		}
	}
	if b.Window == "" || b.Window == WindowAll {
		return Board{}, false
	}
	if _, err := ParsePeriod(b.Window, period, time.Time{}); err != nil || period == "" {
		return Board{}, false
	}
	b.Period = period
	return b, true
}

// windowPrefix is how Key begins each window's boards.
var windowPrefix = map[Window]string{WindowAll: "a", WindowDay: "d", WindowWeek: "w", WindowMonth: "m", WindowYear: "y"}

// Retention says how many periods of each window, the current one included,
// the live ranking (Redis) keeps; older boards are answered from Postgres
// alone. The all-time boards are always kept. A count of 0 keeps none.
type Retention map[Window]int

// DefaultRetention keeps five weeks of days, fifteen weeks, thirteen months
// and three years.
var DefaultRetention = Retention{WindowDay: 35, WindowWeek: 15, WindowMonth: 13, WindowYear: 3}

// PeriodStart is the first instant (UTC) of b's period; zero for all time.
func (b Board) PeriodStart() time.Time {
	var t time.Time
	switch b.Window {
	case WindowDay:
		t, _ = time.Parse(time.DateOnly, b.Period)
	case WindowWeek:
		t, _ = parseISOWeek(b.Period)
	case WindowMonth:
		t, _ = time.Parse("2006-01", b.Period)
	case WindowYear:
		t, _ = time.Parse("2006", b.Period)
	}
	return t
}

// addPeriods moves t, the start of a period of w, n periods on.
func addPeriods(w Window, t time.Time, n int) time.Time {
	switch w {
	case WindowDay:
		return t.AddDate(0, 0, n)
	case WindowWeek:
		return t.AddDate(0, 0, 7*n)
	case WindowMonth:
		return t.AddDate(0, n, 0)
	case WindowYear:
		return t.AddDate(n, 0, 0)
	}
	return t
}

// Until is when board b leaves the live ranking: when its period is no
// longer among the last r[window] ones. Zero for a board kept for good (all
// time).
func (r Retention) Until(b Board) time.Time {
	if b.Window == WindowAll {
		return time.Time{}
	}
	return addPeriods(b.Window, b.PeriodStart(), r[b.Window])
}

// Keeps says whether the live ranking holds board b at now.
func (r Retention) Keeps(b Board, now time.Time) bool {
	until := r.Until(b)
	return until.IsZero() || now.Before(until)
}

// Oldest is, per window, the key of the oldest board the live ranking keeps
// at now: board keys of one window sort as their periods do, so the boards
// kept are those of keys from it up to the window's end. A window that keeps
// none gives a key past every board of it.
func (r Retention) Oldest(now time.Time) map[Window]string {
	out := make(map[Window]string, 4)
	for _, w := range Windows[1:] {
		p := windowPrefix[w] + ":"
		if r[w] <= 0 {
			out[w] = p + "~"
			continue
		}
		start := Board{Window: w, Period: PeriodOf(w, now)}.PeriodStart()
		out[w] = p + PeriodOf(w, addPeriods(w, start, 1-r[w]))
	}
	return out
}

// String writes r as ParseRetention reads it.
func (r Retention) String() string {
	var b strings.Builder
	for _, w := range Windows[1:] {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(w) + "=" + strconv.Itoa(r[w]))
	}
	return b.String()
}

// ParseRetention reads "day=35,week=15,month=13,year=3" (any of them; the
// others keep their defaults).
func ParseRetention(s string) (Retention, error) {
	r := maps.Clone(DefaultRetention)
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, count, _ := strings.Cut(part, "=")
		w := Window(strings.TrimSpace(name))
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if _, known := r[w]; !known || err != nil || n < 0 || n > 10000 {
			return nil, fmt.Errorf("%q: want window=periods, the window day, week, month or year, the periods 0-10000", part)
		}
		r[w] = n
	}
	return r, nil
}
