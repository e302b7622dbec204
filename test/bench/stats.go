package main

import (
	"fmt"
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

// row is one line of the results table.
type row struct {
	section, name string
	value         sample
	unit          string
	// ratio is value / baseline (0: none), with what it is compared to.
	ratio    float64
	versus   string
	target   string
	pass     *bool
	fraction string // of the etcd ceiling, for write rates
}

func (r row) cells() []string {
	v := r.value.sorted()
	val := "—"
	if len(v) > 0 {
		val = fmt.Sprintf("%s %s", num(r.value.median()), r.unit)
		if len(v) > 1 {
			val += fmt.Sprintf(" (%s–%s)", num(v[0]), num(v[len(v)-1]))
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

func num(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.3g", f)
	}
}

func table(rows []row) string {
	var b strings.Builder
	section := ""
	for _, r := range rows {
		if r.section != section {
			section = r.section
			fmt.Fprintf(&b, "\n**%s**\n\n| Measurement | Median (min–max) | Ratio | Target |\n|---|---|---|---|\n", section)
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r.cells(), " | "))
	}
	return b.String()
}

func passIf(ok bool) *bool { return &ok }
