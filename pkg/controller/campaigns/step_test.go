package campaigns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/campaign"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// chooser is a Controller with only the listers choose reads: Datacenters
// dc-0 and dc-1 (maxConcurrentJobs 100), no unfinished Job, and troubled
// (namespace/name, in state unknown, or namespace/name=state) Hardware.
func chooser(t *testing.T, troubled ...string) *Controller {
	t.Helper()
	index := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	dcs, jobs, hws := index(), index(), index()
	for _, name := range []string{"dc-0", "dc-1"} {
		if err := dcs.Add(&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.DatacenterSpec{MaxConcurrentJobs: ptr.To[int32](100)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range troubled {
		key, state, found := strings.Cut(key, "=")
		if !found {
			state = string(v1alpha1.HardwareStateUnknown)
		}
		ns, name, _ := strings.Cut(key, "/")
		if err := hws.Add(&v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Status: v1alpha1.HardwareStatus{State: v1alpha1.HardwareState(state)}}); err != nil {
			t.Fatal(err)
		}
	}
	return &Controller{dcs: listers.NewDatacenterLister(dcs), jobs: listers.NewJobLister(jobs), troubled: listers.NewHardwareLister(hws),
		opts: Options{Clock: clock.RealClock{}}}
}

func perDatacenter(n int32) *v1alpha1.CampaignSpec {
	v := intstr.FromInt32(n)
	return &v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: &v}}
}

// TestChooseFillsEachDatacenter: one step starts as many members as the
// per-datacenter limit allows, not fewer (the members chosen earlier in
// the step were counted twice against it: of 5 allowed, 3 started, the
// rest only at later syncs).
func TestChooseFillsEachDatacenter(t *testing.T) {
	d := &driven{progress: newProgress("uid", ledgerOf(2, 20, 40), nil), wave: 1}
	s := &step{dcReason: map[string]string{}, nextWindow: map[string]time.Time{}}
	chooser(t).choose(perDatacenter(5), d, s, time.Now())
	in := map[string]int{}
	for _, m := range s.start {
		in[m.Datacenter]++
	}
	if in["dc-0"] != 5 || in["dc-1"] != 5 {
		t.Errorf("started %v in one sync, want 5 in each datacenter", in)
	}
}

// TestChooseSaysWhatHoldsAFullDatacenter: members unavailable for another
// reason (here all of dc-0's, in state unknown) leave dc-0 no room; the
// step says which limit holds it (a Campaign so held once said only
// "Running, 0 running").
func TestChooseSaysWhatHoldsAFullDatacenter(t *testing.T) {
	var troubled []string
	recs := ledgerOf(2, 6, 12)
	for key := range recs {
		if strings.HasPrefix(key, "dc-0/") {
			troubled = append(troubled, key)
		}
	}
	d := &driven{progress: newProgress("uid", recs, nil), wave: 1}
	s := &step{dcReason: map[string]string{}, nextWindow: map[string]time.Time{}}
	chooser(t, troubled...).choose(perDatacenter(2), d, s, time.Now())
	for _, m := range s.start {
		if m.Datacenter == "dc-0" {
			t.Errorf("started %s in dc-0, whose members are all unavailable", m.Name)
		}
	}
	if !strings.Contains(s.heldBy, "maxUnavailable.perDatacenter") || !strings.Contains(s.heldBy, "dc-0") {
		t.Errorf("heldBy %q, want maxUnavailable.perDatacenter naming dc-0", s.heldBy)
	}
}

// TestTrippedBudgetOutranksManualPause: a Campaign paused by hand whose
// global budget tripped says so (resuming it does not clear the budget);
// spec.paused once hid the trip behind ManualPause.
func TestTrippedBudgetOutranksManualPause(t *testing.T) {
	recs := ledgerOf(2, 5, 10)
	for _, key := range []string{"dc-0/hw-000", "dc-1/hw-000"} {
		rec := recs[key]
		rec.State = stateFailed
		recs[key] = rec
	}
	zero := intstr.FromInt32(0)
	for _, paused := range []bool{false, true} {
		spec := &v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, Paused: paused,
			FailurePolicy: v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: &zero}}}
		d := &driven{progress: newProgress("uid", recs, nil), wave: 1}
		s := chooser(t).decide(&v1alpha1.Campaign{Spec: *spec}, d)
		if s.paused != v1alpha1.CampaignReasonFailureBudgetExceeded || !strings.Contains(s.pausedMessage, "global: 2 failed") {
			t.Errorf("paused %v: reason %q (%s), want %s naming the global budget", paused, s.paused, s.pausedMessage, v1alpha1.CampaignReasonFailureBudgetExceeded)
		}
		if paused != strings.Contains(s.pausedMessage, "spec.paused is true") {
			t.Errorf("paused %v: message %q", paused, s.pausedMessage)
		}
		if len(s.start) != 0 {
			t.Errorf("paused %v: %d members started past a tripped budget", paused, len(s.start))
		}
	}
}

// TestBrokenMemberStartsInAFullDatacenter: a member in state error is
// unavailable already; repaving it makes nothing more so, so a limit it
// alone fills lets it start (it once counted twice, and a rack whose only
// unavailable server was the broken one could never repave it). The
// others still wait, and an unknown member (its datacenter may just be
// unreachable) counts as one more as before.
func TestBrokenMemberStartsInAFullDatacenter(t *testing.T) {
	d := &driven{progress: newProgress("uid", ledgerOf(2, 4, 8), nil), wave: 1}
	s := &step{dcReason: map[string]string{}, nextWindow: map[string]time.Time{}}
	chooser(t, "dc-0/hw-002=error", "dc-1/hw-001").choose(perDatacenter(1), d, s, time.Now())
	for _, m := range s.start {
		if m.Datacenter == "dc-1" {
			t.Errorf("started %s in dc-1, whose limit of 1 its unknown hw-001 fills", m.Name)
		}
	}
	var inDC0 []string
	for _, m := range s.start {
		if m.Datacenter == "dc-0" {
			inDC0 = append(inDC0, m.Name)
		}
	}
	if len(inDC0) != 1 || inDC0[0] != "hw-002" {
		t.Errorf("started %v in dc-0, want only the broken hw-002 (maxUnavailable.perDatacenter 1, which it fills)", inDC0)
	}
}

// TestReloadIgnoresMembersGivenUp: a datacenter's budget with action
// Cancel gives up its members in every wave; a reload then must not take
// the highest of those waves for the current one (which once let the
// other datacenters skip every wave in between).
func TestReloadIgnoresMembersGivenUp(t *testing.T) {
	recs := ledgerOf(2, 6, 2) // 6 waves of 2
	for key, rec := range recs {
		switch {
		case rec.Wave == 1:
			rec.State, rec.Job = stateFailed, "job-"+key
		case strings.HasPrefix(key, "dc-1/"):
			rec.State, rec.Reason = stateCancelled, v1alpha1.CampaignReasonFailureBudgetExceeded
		}
		recs[key] = rec
	}
	if p := newProgress("uid", recs, nil); p.highestWave != 1 {
		t.Errorf("highest wave %d, want 1: only wave 1 got Jobs", p.highestWave)
	}
}

// TestOtherOriginsJobsTakeMaxConcurrentJobs: a datacenter's
// maxConcurrentJobs counts Jobs of every origin; the Campaign creates no
// Job that would wait in the Job controller's queue behind them (to be
// sent, maybe, after its window closed).
func TestOtherOriginsJobsTakeMaxConcurrentJobs(t *testing.T) {
	c := chooser(t)
	dcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	jobs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, name := range []string{"dc-0", "dc-1"} {
		dcs.Add(&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.DatacenterSpec{MaxConcurrentJobs: ptr.To[int32](3)}})
	}
	for i := range 2 { // two Jobs by hand in dc-0, on machines outside the Campaign
		jobs.Add(&v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-0", Name: fmt.Sprintf("by-hand-%d", i)},
			Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: fmt.Sprintf("other-%d", i)}}})
	}
	c.dcs, c.jobs = listers.NewDatacenterLister(dcs), listers.NewJobLister(jobs)
	d := &driven{progress: newProgress("uid", ledgerOf(2, 10, 20), nil), wave: 1}
	s := &step{dcReason: map[string]string{}, nextWindow: map[string]time.Time{}}
	c.choose(perDatacenter(10), d, s, time.Now())
	in := map[string]int{}
	for _, m := range s.start {
		in[m.Datacenter]++
	}
	if in["dc-0"] != 1 || in["dc-1"] != 3 {
		t.Errorf("started %v, want dc-0 1 (3 slots, 2 taken by hand) and dc-1 3", in)
	}
}

// TestApprovalGateHoldsThroughExemptDatacenters: wave 2 needs approval and
// is left only with members of dc-1, paused by its own budget; the waves
// do not move past it unapproved (raising dc-1's budget later would have
// let dc-1 through an unapproved wave).
func TestApprovalGateHoldsThroughExemptDatacenters(t *testing.T) {
	recs := ledgerOf(2, 3, 2) // waves 1..3 of one member per datacenter
	for _, key := range []string{"dc-0/hw-000", "dc-1/hw-000", "dc-0/hw-001"} {
		rec := recs[key]
		rec.State, rec.Job = stateSucceeded, "job-"+key
		recs[key] = rec
	}
	spec := &v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, Waves: []v1alpha1.CampaignWave{
		{Size: intstr.FromInt32(2)}, {Size: intstr.FromInt32(2), RequireApproval: true}, {Size: intstr.FromInt32(2)}}}
	d := &driven{progress: newProgress("uid", recs, nil), wave: 1}
	s := &step{exempt: map[string]bool{"dc-1": true}}
	chooser(t).advance(spec, d, s, time.Now())
	if d.wave != 2 || s.paused != v1alpha1.CampaignReasonAwaitingApproval {
		t.Errorf("wave %d, paused %q; want wave 2 held for approval", d.wave, s.paused)
	}
	spec.ApprovedWaves = 2
	s = &step{exempt: map[string]bool{"dc-1": true}}
	chooser(t).advance(spec, d, s, time.Now())
	if d.wave != 3 || s.paused != "" {
		t.Errorf("approved: wave %d, paused %q; want wave 3", d.wave, s.paused)
	}
}

// TestClosedWindowHoldsADatacenterWithNothingPending: members waiting for
// their Job's create (their Hardware was busy) are retried only where no
// reason holds their datacenter; a window closed there is such a reason
// even once no member of it is pending.
func TestClosedWindowHoldsADatacenterWithNothingPending(t *testing.T) {
	recs := ledgerOf(2, 2, 4)
	for key, rec := range recs {
		if strings.HasPrefix(key, "dc-0/") {
			rec.State, rec.Job = stateStarted, "job-"+key
			recs[key] = rec
		}
	}
	tomorrow := campaign.Weekdays[(int(time.Now().UTC().Add(24*time.Hour).Weekday())+6)%7]
	spec := &v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, MaintenanceWindows: []v1alpha1.MaintenanceWindow{
		{Days: []string{tomorrow}, Start: "00:00", End: "23:59", TimeZone: "UTC"}}}
	d := &driven{progress: newProgress("uid", recs, nil), wave: 1}
	s := &step{dcReason: map[string]string{}, nextWindow: map[string]time.Time{}}
	chooser(t).choose(spec, d, s, time.Now())
	if s.dcReason["dc-0"] != v1alpha1.CampaignReasonOutsideWindow {
		t.Errorf("dc-0 (nothing pending, members waiting for a create) reason %q, want %s", s.dcReason["dc-0"], v1alpha1.CampaignReasonOutsideWindow)
	}
	if len(s.start) != 0 {
		t.Errorf("started %d members outside the window", len(s.start))
	}
}
