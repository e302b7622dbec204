package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// sample is the values of one measurement over repetitions.
type sample []float64

func (s sample) sorted() []float64 {
	v := append([]float64(nil), s...)
	sort.Float64s(v)
	return v
}

func (s sample) median() float64 {
	v := s.sorted()
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// percentile of latencies (nearest rank).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	v := append([]time.Duration(nil), d...)
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	i := int(p/100*float64(len(v))+0.5) - 1
	return v[max(0, min(i, len(v)-1))]
}

// ms is a duration in milliseconds, to the nanosecond.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// row is one line of the results table.
type row struct {
	section, name string
	value         sample
	unit          string
	// pooled, when set, is the headline instead of the median of value: a
	// percentile of every latency of every repetition together; value then
	// holds the per-repetition percentiles, shown as their range.
	pooled *float64
	// ratio is value / baseline (0: none), with what it is compared to.
	ratio    float64
	versus   string
	target   string
	pass     *bool
	fraction string // of the etcd ceiling, for write rates
}

// headline is the figure a row stands for: pooled if set, else the median.
func (r row) headline() float64 {
	if r.pooled != nil {
		return *r.pooled
	}
	return r.value.median()
}

func (r row) cells() []string {
	v := r.value.sorted()
	head := r.headline()
	// Sub-millisecond figures in microseconds, with their range in the same unit.
	unit, scale := r.unit, 1.0
	if unit == "ms" && math.Abs(head) < 1 {
		unit, scale = "µs", 1000
	}
	val := "—"
	switch {
	case r.pooled != nil:
		val = fmt.Sprintf("%s %s pooled", num(head*scale), unit)
		if len(v) > 1 {
			val += fmt.Sprintf(" (per rep %s–%s)", num(v[0]*scale), num(v[len(v)-1]*scale))
		}
	case len(v) > 0:
		val = strings.TrimSpace(fmt.Sprintf("%s %s", num(head*scale), unit))
		if len(v) > 1 {
			val += fmt.Sprintf(" (%s–%s)", num(v[0]*scale), num(v[len(v)-1]*scale))
		}
	}
	ratio := ""
	if r.ratio != 0 {
		ratio = fmt.Sprintf("%.2fx %s", r.ratio, r.versus)
	}
	if r.fraction != "" {
		if ratio != "" {
			ratio += "; "
		}
		ratio += r.fraction
	}
	verdict := ""
	if r.pass != nil {
		verdict = "MISS"
		if *r.pass {
			verdict = "PASS"
		}
		verdict += " (" + r.target + ")"
	}
	return []string{r.name, val, ratio, verdict}
}

// num prints a figure with three significant digits (all the integer digits
// from 100 up), never in exponent form: 0.000812 is "0.000812", not "0".
func num(f float64) string {
	if f == 0 {
		return "0"
	}
	if math.Abs(f) < 100 {
		// Rounded to three significant digits first: 9.996 is "10.0".
		p := math.Pow(10, math.Floor(math.Log10(math.Abs(f)))-2)
		f = math.Round(f/p) * p
	}
	a := math.Abs(f)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", f)
	case a >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.*f", max(0, 2-int(math.Floor(math.Log10(a)))), f)
	}
}

func table(rows []row) string {
	var b strings.Builder
	section := ""
	for _, r := range rows {
		if r.section != section {
			section = r.section
			fmt.Fprintf(&b, "\n**%s**\n\n| Measurement | Median (min–max), or pooled percentile (per-rep range) | Ratio | Target |\n|---|---|---|---|\n", section)
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r.cells(), " | "))
	}
	return b.String()
}

func passIf(ok bool) *bool { return &ok }
