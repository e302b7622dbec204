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
// inside one of them and no later than its end minus its cutoff. When it
// may not, next is when the first of them next lets Jobs start (zero if
// none ever does, e.g. a cutoff as long as the window).
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
// week after, in w's time zone (so a window that crosses midnight or a
// daylight-saving change is read on the wall clock of that zone).
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
	local := now.In(loc)
	var out []span
	for d := -1; d <= 7; d++ {
		day := time.Date(local.Year(), local.Month(), local.Day()+d, 0, 0, 0, 0, loc)
		if !onDay(w.Days, day.Weekday()) {
			continue
		}
		start := time.Date(day.Year(), day.Month(), day.Day(), startH, startM, 0, 0, loc)
		end := time.Date(day.Year(), day.Month(), day.Day(), endH, endM, 0, 0, loc)
		if !end.After(start) {
			end = time.Date(day.Year(), day.Month(), day.Day()+1, endH, endM, 0, 0, loc)
		}
		out = append(out, span{start: start, last: end.Add(-cutoff)})
	}
	return out
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

func location(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}

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
// closes on the next day), on a day without a daylight-saving change.
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
