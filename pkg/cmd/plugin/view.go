package plugin

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// view shows a Campaign's progress while status follows it.
type view interface {
	// update shows the Campaign as it now is.
	update(c *v1alpha1.Campaign)
	// finish shows the Campaign as it last was and stops the view; the caller
	// then prints the outcome.
	finish(last *v1alpha1.Campaign)
}

// lineView prints the progress line each time it changes: for pipes and
// logs, where a redrawn screen would be noise.
type lineView struct {
	out  io.Writer
	last string
}

func (v *lineView) update(c *v1alpha1.Campaign) {
	line := progressLine(c, true)
	if line == v.last {
		return
	}
	v.last = line
	fmt.Fprintln(v.out, line)
}

// finish prints nothing: the outcome line says it all.
func (v *lineView) finish(*v1alpha1.Campaign) {}

// barWidth is the width of each progress bar, fixed so that the screen is the
// same whatever the terminal's width (as long as it fits).
const barWidth = 40

// barView draws, on a terminal, the progress line and under it a bar per
// datacenter labelled with its name, done/targets, failures and why it is
// paused (so the top line leaves out the datacenters' pauses). Bars appear
// as datacenters do in status.datacenters (sorted by name), once their
// members are fixed.
type barView struct {
	progress *mpb.Progress
	header   *mpb.Bar

	mu     sync.Mutex // guards what the decorators read
	line   string
	labels map[string]string // datacenter -> label after its bar
	bars   map[string]*mpb.Bar
}

// newBarView draws on w, which must be a terminal.
func newBarView(w io.Writer, campaign string) view {
	return newBarViewWith(campaign, mpb.WithOutput(w), mpb.WithWidth(barWidth))
}

// newBarViewWith builds the view with mpb's container options (tests pass a
// console writer and manual refresh).
func newBarViewWith(campaign string, opts ...mpb.ContainerOption) *barView {
	v := &barView{
		progress: mpb.New(opts...),
		line:     fmt.Sprintf("Waiting for campaign %q...", campaign),
		labels:   map[string]string{},
		bars:     map[string]*mpb.Bar{},
	}
	v.header = v.progress.New(0, mpb.NopStyle(), mpb.BarFillerTrim(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			v.mu.Lock()
			defer v.mu.Unlock()
			return v.line
		})))
	return v
}

func (v *barView) update(c *v1alpha1.Campaign) {
	v.show(c, progressLine(c, false))
}

// show sets the top line and the datacenters' bars and labels.
func (v *barView) show(c *v1alpha1.Campaign, line string) {
	v.mu.Lock()
	v.line = line
	var added []v1alpha1.CampaignDatacenterStatus
	for _, dc := range c.Status.Datacenters {
		label := countsText(dc.Counts)
		if p := pausedText(dc); p != "" {
			label += "  (" + p + ")"
		}
		v.labels[dc.Name] = label
		if _, ok := v.bars[dc.Name]; !ok && dc.Counts.Targets > 0 {
			added = append(added, dc)
		}
	}
	v.mu.Unlock()

	slices.SortFunc(added, func(a, b v1alpha1.CampaignDatacenterStatus) int { return strings.Compare(a.Name, b.Name) })
	for _, dc := range added {
		v.bars[dc.Name] = v.addBar(dc.Name, dc.Counts.Targets)
	}
	for _, dc := range c.Status.Datacenters {
		if b, ok := v.bars[dc.Name]; ok {
			b.SetCurrent(int64(done(dc.Counts)))
		}
	}
}

// addBar adds a datacenter's bar: its name (names aligned), the bar, its label.
func (v *barView) addBar(name string, targets int32) *mpb.Bar {
	return v.progress.New(int64(targets),
		mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding("-").Rbound("]"),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			v.mu.Lock()
			defer v.mu.Unlock()
			return v.labels[name]
		})),
	)
}

// finish draws the last state and leaves every bar as it is.
func (v *barView) finish(last *v1alpha1.Campaign) {
	if last != nil {
		v.show(last, stateLine(last))
	}
	v.header.Abort(false)
	for _, b := range v.bars {
		b.Abort(false) // no-op on a completed bar
	}
	v.progress.Wait()
}
