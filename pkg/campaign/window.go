package campaign

import (
	"fmt"
	"time"
	_ "time/tzdata" // windows name IANA zones; do not depend on the machine's zoneinfo

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// Windows returns the maintenance windows that apply to a datacenter with
// labels dcLabels.
func Windows(windows []v1alpha1.MaintenanceWindow, dcLabels map[string]string) []v1alpha1.MaintenanceWindow {
	var out []v1alpha1.MaintenanceWindow
	for _, w := range windows {
		selector := labels.Everything()
		if w.DatacenterSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(w.DatacenterSelector)
			if err != nil {
				continue // validation refuses it; a window that selects nothing restricts nothing
			}
			selector = s
		}
		if selector.Matches(labels.Set(dcLabels)) {
			out = append(out, w)
		}
	}
	return out
}

// Open reports whether a Job may start at now under windows (all of which
// apply to the datacenter): yes when there are none, else when now is
// inside one of them, from its start to before its end minus its cutoff.
// When it may not, next is when the first of them next lets Jobs start
// (zero if none ever does: a cutoff as long as the window, or a window
// validation should have refused, such as an unknown time zone).
func Open(windows []v1alpha1.MaintenanceWindow, now time.Time) (open bool, next time.Time) {
	if len(windows) == 0 {
		return true, time.Time{}
	}
	for _, w := range windows {
		for _, span := range spans(w, now) {
			if !now.Before(span.start) && now.Before(span.last) {
				return true, time.Time{}
			}
			if span.start.After(now) && span.start.Before(span.last) && (next.IsZero() || span.start.Before(next)) {
				next = span.start
			}
		}
	}
	return false, next
}

// span is one opening of a window: Jobs may start from start until (not
// including) last, which is its end minus its cutoff.
type span struct{ start, last time.Time }

// spans lists the openings of w that start from the day before now to a
// week after. Days, start and end are read on the wall clock of w's time
// zone: an opening is the time during which that clock reads from start to
// end (crossing midnight when end is not after start), on the days listed,
// the day being the one the opening starts on. On a daylight-saving change
// the opening is as long as the clock reads it: a 01:00-04:00 window is an
// hour shorter when the clock springs forward and an hour longer when it
// falls back (see wallClock). The cutoff is real time taken off the end.
func spans(w v1alpha1.MaintenanceWindow, now time.Time) []span {
	loc, err := location(w.TimeZone)
	if err != nil {
		return nil
	}
	startH, startM, err1 := clock(w.Start)
	endH, endM, err2 := clock(w.End)
	if err1 != nil || err2 != nil {
		return nil
	}
	var cutoff time.Duration
	if w.Cutoff != nil {
		cutoff = w.Cutoff.Duration
	}
	// Whether the opening crosses midnight is a matter of the wall clock,
	// not of instants: on a change day the instants can say otherwise.
	crossesMidnight := endH*60+endM <= startH*60+startM
	local := now.In(loc)
	var out []span
	for d := -1; d <= 7; d++ {
		// Calendar days are counted in UTC: a local midnight may not exist.
		day := time.Date(local.Year(), local.Month(), local.Day()+d, 12, 0, 0, 0, time.UTC)
		if !onDay(w.Days, day.Weekday()) {
			continue
		}
		endDay := day
		if crossesMidnight {
			endDay = day.AddDate(0, 0, 1)
		}
		start := wallClock(day, startH, startM, loc)
		end := wallClock(endDay, endH, endM, loc)
		out = append(out, span{start: start, last: end.Add(-cutoff)})
	}
	return out
}

// wallClock is the first instant at which the clock of loc reads
// hour:minute on day's date. On a day the clock skips that time (it springs
// forward over it), that is the instant of the change, when the clock
// first reads later; on a day it reads that time twice (it falls back), the
// first of them.
func wallClock(day time.Time, hour, minute int, loc *time.Location) time.Time {
	y, m, d := day.Date()
	want := time.Date(y, m, d, hour, minute, 0, 0, time.UTC)
	t := time.Date(y, m, d, hour, minute, 0, 0, loc)
	zoneStart, zoneEnd := t.ZoneBounds()
	if got := wallOf(t); !got.Equal(want) {
		// Skipped: time.Date gave an instant on one side of the gap.
		if got.Before(want) && !zoneEnd.IsZero() {
			return zoneEnd
		}
		if got.After(want) && !zoneStart.IsZero() {
			return zoneStart
		}
		return t
	}
	if zoneStart.IsZero() {
		return t
	}
	// Read twice: the zone before t's may have read it first.
	_, before := zoneStart.Add(-time.Second).Zone()
	_, at := t.Zone()
	if earlier := t.Add(time.Duration(at-before) * time.Second); earlier.Before(zoneStart) && wallOf(earlier.In(loc)).Equal(want) {
		return earlier
	}
	return t
}

// wallOf is what the clock of t's location reads at t, as a time in UTC.
func wallOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// Weekdays are the names days takes, Monday first.
var Weekdays = []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}

func onDay(days []string, wd time.Weekday) bool {
	if len(days) == 0 {
		return true
	}
	name := Weekdays[(int(wd)+6)%7]
	for _, d := range days {
		if d == name {
			return true
		}
	}
	return false
}

// location loads an IANA time zone; "" is UTC. "Local" is refused: a
// window does not move with the machine the controller runs on.
func location(name string) (*time.Location, error) {
	switch name {
	case "":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("%q is not an IANA time zone name (for example Europe/Paris or UTC)", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone name (for example Europe/Paris or UTC)", name)
	}
	return loc, nil
}

// ParseTimeZone is location for validation: an IANA time zone name, ""
// being UTC.
func ParseTimeZone(name string) (*time.Location, error) { return location(name) }

// clock parses HH:MM (00:00 to 23:59).
func clock(s string) (hour, minute int, err error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, 0, fmt.Errorf("%q is not a time of day as HH:MM (00:00 to 23:59)", s)
	}
	return t.Hour(), t.Minute(), nil
}

// ParseClock is clock for validation: HH:MM, 00:00 to 23:59.
func ParseClock(s string) (hour, minute int, err error) { return clock(s) }

// Length is how long window w stays open each time (end not after start
// closes on the next day), on a day without a daylight-saving change: on
// one, the window is as long as the wall clock reads it (see spans).
func Length(w v1alpha1.MaintenanceWindow) (time.Duration, error) {
	sh, sm, err := clock(w.Start)
	if err != nil {
		return 0, err
	}
	eh, em, err := clock(w.End)
	if err != nil {
		return 0, err
	}
	d := time.Duration(eh*60+em-sh*60-sm) * time.Minute
	if d <= 0 {
		d += 24 * time.Hour
	}
	return d, nil
}
