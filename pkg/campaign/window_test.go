package campaign

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// The fake clock: fixed instants written with their offset, so each says
// what the wall clock reads where. 2026-03-02 is a Monday; 2026-03-08 (New
// York) and 2026-03-29 (Paris) are spring-forward days, 2026-11-01 (New York)
// and 2026-10-25 (Paris) fall-back days.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("bad test time %q: %v", s, err)
	}
	return ts
}

func window(start, end, zone string, days ...string) v1alpha1.MaintenanceWindow {
	return v1alpha1.MaintenanceWindow{Start: start, End: end, TimeZone: zone, Days: days}
}

func withCutoff(w v1alpha1.MaintenanceWindow, d time.Duration) v1alpha1.MaintenanceWindow {
	w.Cutoff = &metav1.Duration{Duration: d}
	return w
}

func TestOpen(t *testing.T) {
	utc := window("01:00", "05:00", "")
	friNight := window("22:00", "02:00", "", "Fri")
	tests := []struct {
		name     string
		windows  []v1alpha1.MaintenanceWindow
		now      string
		wantOpen bool
		wantNext string // "" when open, or when no window ever opens
	}{
		{name: "no windows: always open", windows: nil, now: "2026-03-04T12:00:00Z", wantOpen: true},

		// A simple window, every day, in UTC.
		{name: "inside", windows: []v1alpha1.MaintenanceWindow{utc}, now: "2026-03-04T02:00:00Z", wantOpen: true},
		{name: "at its start: open", windows: []v1alpha1.MaintenanceWindow{utc}, now: "2026-03-04T01:00:00Z", wantOpen: true},
		{name: "a second before its end: open", windows: []v1alpha1.MaintenanceWindow{utc}, now: "2026-03-04T04:59:59Z", wantOpen: true},
		{name: "at its end: closed, opens tomorrow", windows: []v1alpha1.MaintenanceWindow{utc}, now: "2026-03-04T05:00:00Z",
			wantNext: "2026-03-05T01:00:00Z"},
		{name: "before it: opens today", windows: []v1alpha1.MaintenanceWindow{utc}, now: "2026-03-04T00:30:00Z",
			wantNext: "2026-03-04T01:00:00Z"},
		{name: "now in another zone: the same instant, the same answer", windows: []v1alpha1.MaintenanceWindow{utc},
			now: "2026-03-04T03:00:00+02:00", wantOpen: true},

		// Days.
		{name: "days: not today, opens on the next listed day", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "", "Mon")},
			now: "2026-03-04T02:00:00Z", wantNext: "2026-03-09T01:00:00Z"},
		{name: "days: after today's window, opens a week later", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "", "Mon")},
			now: "2026-03-09T06:00:00Z", wantNext: "2026-03-16T01:00:00Z"},
		{name: "days: Sat and Sun, on a Friday", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "", "Sat", "Sun")},
			now: "2026-03-06T03:00:00Z", wantNext: "2026-03-07T01:00:00Z"},
		{name: "days: Sun, on a Sunday", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "", "Sun")},
			now: "2026-03-08T03:00:00Z", wantOpen: true},
		{name: "days: a name not in Weekdays never opens", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "", "Monday")},
			now: "2026-03-09T03:00:00Z"},

		// Crossing midnight: read on the weekday it starts.
		{name: "midnight: Friday 22:00 to Saturday 02:00 is open Saturday 01:00", windows: []v1alpha1.MaintenanceWindow{friNight},
			now: "2026-03-07T01:00:00Z", wantOpen: true},
		{name: "midnight: open Friday 23:59", windows: []v1alpha1.MaintenanceWindow{friNight},
			now: "2026-03-06T23:59:00Z", wantOpen: true},
		{name: "midnight: closed Saturday 02:00, opens next Friday", windows: []v1alpha1.MaintenanceWindow{friNight},
			now: "2026-03-07T02:00:00Z", wantNext: "2026-03-13T22:00:00Z"},
		{name: "midnight: closed Saturday 23:00 (Saturday is not listed)", windows: []v1alpha1.MaintenanceWindow{friNight},
			now: "2026-03-07T23:00:00Z", wantNext: "2026-03-13T22:00:00Z"},
		{name: "midnight: closed Thursday 23:00", windows: []v1alpha1.MaintenanceWindow{friNight},
			now: "2026-03-05T23:00:00Z", wantNext: "2026-03-06T22:00:00Z"},
		{name: "midnight: Friday before it opens", windows: []v1alpha1.MaintenanceWindow{friNight},
			now: "2026-03-06T21:00:00Z", wantNext: "2026-03-06T22:00:00Z"},
		{name: "end equal to start: open all day", windows: []v1alpha1.MaintenanceWindow{window("06:00", "06:00", "", "Wed")},
			now: "2026-03-05T05:59:00Z", wantOpen: true},
		{name: "end equal to start: closed a day later", windows: []v1alpha1.MaintenanceWindow{window("06:00", "06:00", "", "Wed")},
			now: "2026-03-05T06:00:00Z", wantNext: "2026-03-11T06:00:00Z"},

		// Cutoff: no start later than end minus cutoff.
		{name: "cutoff: before end minus cutoff, open", windows: []v1alpha1.MaintenanceWindow{withCutoff(friNight, time.Hour)},
			now: "2026-03-07T00:59:00Z", wantOpen: true},
		{name: "cutoff: at end minus cutoff, closed", windows: []v1alpha1.MaintenanceWindow{withCutoff(friNight, time.Hour)},
			now: "2026-03-07T01:00:00Z", wantNext: "2026-03-13T22:00:00Z"},
		{name: "cutoff: inside the window but after end minus cutoff, closed", windows: []v1alpha1.MaintenanceWindow{withCutoff(utc, 30*time.Minute)},
			now: "2026-03-04T04:45:00Z", wantNext: "2026-03-05T01:00:00Z"},
		{name: "cutoff as long as the window: never opens", windows: []v1alpha1.MaintenanceWindow{withCutoff(utc, 4*time.Hour)},
			now: "2026-03-04T02:00:00Z"},
		{name: "cutoff longer than the window: never opens", windows: []v1alpha1.MaintenanceWindow{withCutoff(utc, 5*time.Hour)},
			now: "2026-03-04T00:00:00Z"},

		// Several windows: open in any, next is the earliest.
		{name: "several: open in the second", windows: []v1alpha1.MaintenanceWindow{utc, window("12:00", "13:00", "")},
			now: "2026-03-04T12:30:00Z", wantOpen: true},
		{name: "several: the earliest next opening", windows: []v1alpha1.MaintenanceWindow{window("01:00", "02:00", "", "Mon"), window("03:00", "04:00", "", "Wed")},
			now: "2026-03-03T12:00:00Z", wantNext: "2026-03-04T03:00:00Z"},
		{name: "several: one that never opens does not hide the other", windows: []v1alpha1.MaintenanceWindow{withCutoff(utc, 4*time.Hour), window("03:00", "04:00", "", "Wed")},
			now: "2026-03-03T12:00:00Z", wantNext: "2026-03-04T03:00:00Z"},

		// Time zones.
		{name: "Paris in winter (UTC+1): 01:30 in Paris is open", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "Europe/Paris")},
			now: "2026-01-15T00:30:00Z", wantOpen: true},
		{name: "the same instant under a UTC window is closed", windows: []v1alpha1.MaintenanceWindow{utc},
			now: "2026-01-15T00:30:00Z", wantNext: "2026-01-15T01:00:00Z"},
		{name: "Paris in winter: after 05:00 in Paris, opens at 01:00 Paris = 00:00 UTC", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "Europe/Paris")},
			now: "2026-01-15T04:30:00Z", wantNext: "2026-01-16T00:00:00Z"},
		{name: "Paris in summer (UTC+2): 01:30 in Paris is open", windows: []v1alpha1.MaintenanceWindow{window("01:00", "05:00", "Europe/Paris")},
			now: "2026-07-15T23:30:00Z", wantOpen: true},
		{name: "Paris: the weekday is Paris's (Sunday in UTC, Monday in Paris)", windows: []v1alpha1.MaintenanceWindow{window("00:00", "01:00", "Europe/Paris", "Mon")},
			now: "2026-03-08T23:30:00Z", wantOpen: true},
		{name: "New York: Friday 22:30 EST is Saturday 03:30 UTC, open", windows: []v1alpha1.MaintenanceWindow{window("22:00", "02:00", "America/New_York", "Fri")},
			now: "2026-03-07T03:30:00Z", wantOpen: true},
		{name: "New York: Saturday 01:30 EST is open on Friday's window", windows: []v1alpha1.MaintenanceWindow{window("22:00", "02:00", "America/New_York", "Fri")},
			now: "2026-03-07T06:30:00Z", wantOpen: true},
		{name: "New York: Friday 18:00 EST, opens at 22:00 EST", windows: []v1alpha1.MaintenanceWindow{window("22:00", "02:00", "America/New_York", "Fri")},
			now: "2026-03-06T23:00:00Z", wantNext: "2026-03-07T03:00:00Z"},
		{name: "an unknown time zone never opens", windows: []v1alpha1.MaintenanceWindow{window("00:00", "00:00", "Mars/Olympus_Mons")},
			now: "2026-03-04T12:00:00Z"},
		{name: "Local is no IANA zone: never opens", windows: []v1alpha1.MaintenanceWindow{window("00:00", "00:00", "Local")},
			now: "2026-03-04T12:00:00Z"},
		{name: "a start that does not parse never opens", windows: []v1alpha1.MaintenanceWindow{window("1:00", "05:00", "")},
			now: "2026-03-04T02:00:00Z"},

		// Daylight-saving changes: the window is what the wall clock reads.
		// New York springs forward at 02:00 EST (07:00 UTC) to 03:00 EDT.
		{name: "NY spring forward: 01:00-04:00 opens at 01:00 EST", windows: []v1alpha1.MaintenanceWindow{window("01:00", "04:00", "America/New_York")},
			now: "2026-03-08T05:00:00Z", wantNext: "2026-03-08T06:00:00Z"},
		{name: "NY spring forward: 01:00-04:00 is open at 03:30 EDT", windows: []v1alpha1.MaintenanceWindow{window("01:00", "04:00", "America/New_York")},
			now: "2026-03-08T07:30:00Z", wantOpen: true},
		{name: "NY spring forward: 01:00-04:00 closes at 04:00 EDT, two hours after it opened", windows: []v1alpha1.MaintenanceWindow{window("01:00", "04:00", "America/New_York")},
			now: "2026-03-08T08:00:00Z", wantNext: "2026-03-09T05:00:00Z"},
		{name: "NY spring forward: a one-hour cutoff is real time off 04:00 EDT", windows: []v1alpha1.MaintenanceWindow{withCutoff(window("01:00", "04:00", "America/New_York"), time.Hour)},
			now: "2026-03-08T07:00:00Z", wantNext: "2026-03-09T05:00:00Z"},
		{name: "NY spring forward: a start in the skipped hour opens at the change, not at 01:30 EST", windows: []v1alpha1.MaintenanceWindow{window("02:30", "03:30", "America/New_York")},
			now: "2026-03-08T06:45:00Z", wantNext: "2026-03-08T07:00:00Z"},
		{name: "NY spring forward: 02:30-03:30 is open at 03:15 EDT", windows: []v1alpha1.MaintenanceWindow{window("02:30", "03:30", "America/New_York")},
			now: "2026-03-08T07:15:00Z", wantOpen: true},
		{name: "NY spring forward: 02:30-03:30 closes at 03:30 EDT", windows: []v1alpha1.MaintenanceWindow{window("02:30", "03:30", "America/New_York")},
			now: "2026-03-08T07:30:00Z", wantNext: "2026-03-09T06:30:00Z"},
		{name: "NY spring forward: 02:00-03:00 is skipped whole, not open at 01:30 EST", windows: []v1alpha1.MaintenanceWindow{window("02:00", "03:00", "America/New_York")},
			now: "2026-03-08T06:30:00Z", wantNext: "2026-03-09T06:00:00Z"},
		// Paris springs forward at 02:00 CET (01:00 UTC) to 03:00 CEST.
		{name: "Paris spring forward: 01:00-04:00 is open at 03:59 CEST", windows: []v1alpha1.MaintenanceWindow{window("01:00", "04:00", "Europe/Paris")},
			now: "2026-03-29T01:59:00Z", wantOpen: true},
		{name: "Paris spring forward: 01:00-04:00 closes at 04:00 CEST, two hours after it opened", windows: []v1alpha1.MaintenanceWindow{window("01:00", "04:00", "Europe/Paris")},
			now: "2026-03-29T02:00:00Z", wantNext: "2026-03-29T23:00:00Z"},
		{name: "Paris spring forward: 02:30-03:30 is not a day long", windows: []v1alpha1.MaintenanceWindow{window("02:30", "03:30", "Europe/Paris")},
			now: "2026-03-29T12:00:00Z", wantNext: "2026-03-30T00:30:00Z"},
		{name: "Paris spring forward: 02:30-03:30 opens at the change, 03:00 CEST", windows: []v1alpha1.MaintenanceWindow{window("02:30", "03:30", "Europe/Paris")},
			now: "2026-03-29T01:00:00Z", wantOpen: true},
		// New York falls back at 02:00 EDT (06:00 UTC) to 01:00 EST; Paris at 03:00 CEST (01:00 UTC) to 02:00 CET.
		{name: "NY fall back: 01:00-02:00 is open through both 01:30s (EST)", windows: []v1alpha1.MaintenanceWindow{window("01:00", "02:00", "America/New_York")},
			now: "2026-11-01T06:30:00Z", wantOpen: true},
		{name: "NY fall back: 01:00-02:00 opens at the first 01:00 (EDT)", windows: []v1alpha1.MaintenanceWindow{window("01:00", "02:00", "America/New_York")},
			now: "2026-11-01T04:30:00Z", wantNext: "2026-11-01T05:00:00Z"},
		{name: "NY fall back: an end read twice is its first (01:30 EDT)", windows: []v1alpha1.MaintenanceWindow{window("00:00", "01:30", "America/New_York")},
			now: "2026-11-01T06:15:00Z", wantNext: "2026-11-02T05:00:00Z"},
		{name: "Paris fall back: 02:00-03:00 opens at the first 02:00 (CEST)", windows: []v1alpha1.MaintenanceWindow{window("02:00", "03:00", "Europe/Paris")},
			now: "2026-10-25T00:30:00Z", wantOpen: true},
		{name: "Paris fall back: 02:00-03:00 is open at the second 02:30 (CET)", windows: []v1alpha1.MaintenanceWindow{window("02:00", "03:00", "Europe/Paris")},
			now: "2026-10-25T01:30:00Z", wantOpen: true},
		{name: "Paris fall back: 02:00-03:00 closes at 03:00 CET, two hours after it opened", windows: []v1alpha1.MaintenanceWindow{window("02:00", "03:00", "Europe/Paris")},
			now: "2026-10-25T02:00:00Z", wantNext: "2026-10-26T01:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open, next := Open(tc.windows, at(t, tc.now))
			if open != tc.wantOpen {
				t.Errorf("Open(%s) = %v, want %v", tc.now, open, tc.wantOpen)
			}
			var wantNext time.Time
			if tc.wantNext != "" {
				wantNext = at(t, tc.wantNext)
			}
			if !next.Equal(wantNext) {
				t.Errorf("next = %s, want %s", next.UTC().Format(time.RFC3339), wantNext.UTC().Format(time.RFC3339))
			}
		})
	}
}

// TestOpenDaylightSavingLength walks a 01:00-04:00 window minute by minute
// on change days and on an ordinary day, and measures how long it is open.
func TestOpenDaylightSavingLength(t *testing.T) {
	tests := []struct {
		name string
		zone string
		day  string // UTC midnight of the day before, to start the walk
		want time.Duration
	}{
		{name: "New York, an ordinary day", zone: "America/New_York", day: "2026-03-01T00:00:00Z", want: 3 * time.Hour},
		{name: "New York springs forward: an hour shorter", zone: "America/New_York", day: "2026-03-08T00:00:00Z", want: 2 * time.Hour},
		{name: "New York falls back: an hour longer", zone: "America/New_York", day: "2026-11-01T00:00:00Z", want: 4 * time.Hour},
		{name: "Paris springs forward: an hour shorter", zone: "Europe/Paris", day: "2026-03-28T12:00:00Z", want: 2 * time.Hour},
		{name: "Paris falls back: an hour longer", zone: "Europe/Paris", day: "2026-10-24T12:00:00Z", want: 4 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := []v1alpha1.MaintenanceWindow{window("01:00", "04:00", tc.zone)}
			var open time.Duration
			start := at(t, tc.day)
			for now := start; now.Before(start.Add(24 * time.Hour)); now = now.Add(time.Minute) {
				if ok, _ := Open(w, now); ok {
					open += time.Minute
				}
			}
			if open != tc.want {
				t.Errorf("open for %s, want %s", open, tc.want)
			}
			if length, _ := Length(w[0]); length != 3*time.Hour {
				t.Errorf("Length = %s, want 3h: it speaks of a day without a change", length)
			}
		})
	}
}

func TestWindows(t *testing.T) {
	all := window("01:00", "02:00", "")
	eu := window("02:00", "03:00", "Europe/Paris")
	eu.DatacenterSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}
	notCanary := window("03:00", "04:00", "")
	notCanary.DatacenterSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "canary", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	broken := window("04:00", "05:00", "")
	broken.DatacenterSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "region", Operator: "Near"}}}
	windows := []v1alpha1.MaintenanceWindow{all, eu, notCanary, broken}

	tests := []struct {
		name   string
		labels map[string]string
		want   []string // the windows' starts
	}{
		{name: "eu, not canary", labels: map[string]string{"region": "eu"}, want: []string{"01:00", "02:00", "03:00"}},
		{name: "us canary", labels: map[string]string{"region": "us", "canary": "true"}, want: []string{"01:00"}},
		{name: "no labels", labels: nil, want: []string{"01:00", "03:00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, w := range Windows(windows, tc.labels) {
				got = append(got, w.Start)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("windows %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("windows %v, want %v", got, tc.want)
				}
			}
		})
	}
	if got := Windows(nil, map[string]string{"region": "eu"}); len(got) != 0 {
		t.Errorf("Windows(nil) = %v, want none", got)
	}
	if open, _ := Open(Windows([]v1alpha1.MaintenanceWindow{eu}, map[string]string{"region": "us"}), at(t, "2026-03-04T12:00:00Z")); !open {
		t.Errorf("a datacenter no window selects is closed, want open")
	}
}

func TestLength(t *testing.T) {
	tests := []struct {
		name       string
		start, end string
		want       time.Duration
		wantErr    bool
	}{
		{name: "same day", start: "01:00", end: "05:00", want: 4 * time.Hour},
		{name: "minutes", start: "01:15", end: "01:45", want: 30 * time.Minute},
		{name: "across midnight", start: "22:00", end: "02:00", want: 4 * time.Hour},
		{name: "end equal to start is a whole day", start: "05:00", end: "05:00", want: 24 * time.Hour},
		{name: "end a minute before start", start: "05:00", end: "04:59", want: 23*time.Hour + 59*time.Minute},
		{name: "the longest same-day window", start: "00:00", end: "23:59", want: 23*time.Hour + 59*time.Minute},
		{name: "bad start", start: "24:00", end: "01:00", wantErr: true},
		{name: "bad end", start: "01:00", end: "1:00", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Length(window(tc.start, tc.end, ""))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Length error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("Length = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseClock(t *testing.T) {
	tests := []struct {
		in                   string
		wantHour, wantMinute int
		wantErr              bool
	}{
		{in: "00:00"},
		{in: "23:59", wantHour: 23, wantMinute: 59},
		{in: "07:05", wantHour: 7, wantMinute: 5},
		{in: "24:00", wantErr: true},
		{in: "12:60", wantErr: true},
		{in: "7:30", wantErr: true},
		{in: "07:5", wantErr: true},
		{in: " 7:30", wantErr: true},
		{in: "07:30:00", wantErr: true},
		{in: "0730", wantErr: true},
		{in: "ab:cd", wantErr: true},
		{in: "-1:00", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			h, m, err := ParseClock(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseClock(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && (h != tc.wantHour || m != tc.wantMinute) {
				t.Errorf("ParseClock(%q) = %d:%d, want %d:%d", tc.in, h, m, tc.wantHour, tc.wantMinute)
			}
		})
	}
}

func TestParseTimeZone(t *testing.T) {
	tests := []struct {
		in       string
		wantName string
		wantErr  bool
	}{
		{in: "", wantName: "UTC"},
		{in: "UTC", wantName: "UTC"},
		{in: "Europe/Paris", wantName: "Europe/Paris"},
		{in: "America/New_York", wantName: "America/New_York"},
		{in: "Local", wantErr: true},
		{in: "Mars/Olympus_Mons", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			loc, err := ParseTimeZone(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseTimeZone(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && loc.String() != tc.wantName {
				t.Errorf("ParseTimeZone(%q) = %s, want %s", tc.in, loc, tc.wantName)
			}
		})
	}
}

func TestWeekdays(t *testing.T) {
	// 2026-03-02 is a Monday.
	for i, name := range Weekdays {
		day := time.Date(2026, 3, 2+i, 12, 0, 0, 0, time.UTC)
		if !onDay([]string{name}, day.Weekday()) {
			t.Errorf("%s does not match %s", name, day.Weekday())
		}
		if onDay([]string{name}, day.Add(24*time.Hour).Weekday()) {
			t.Errorf("%s matches %s", name, day.Add(24*time.Hour).Weekday())
		}
	}
}
