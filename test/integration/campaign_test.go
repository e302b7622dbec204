package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

const rackLabel = "topology.stargate.io/rack"

// fleet is a server with controllers and mock datacenters dc-0..dc-N, each
// with racks of Hardware labelled by rack, and a Template os-2 everywhere.
type fleet struct {
	ts  *testServer
	dcs map[string]*mockDC
	// domainOf maps a MAC to its datacenter/rack.
	domainOf map[string]string
	members  int
	creds    string
}

func startFleet(t *testing.T, dcs, racks, perRack int, mutate func(dc string, o *mockdc.Options)) *fleet {
	t.Helper()
	creds := t.TempDir()
	f := &fleet{dcs: map[string]*mockDC{}, domainOf: map[string]string{}, creds: creds}
	for d := range dcs {
		name := fmt.Sprintf("dc-%d", d)
		// The datacenter knows its machines: one it does not know is in state
		// unknown, which a Campaign counts as unavailable.
		var inventory []mockdc.InventoryMachine
		for r := range racks {
			for i := range perRack {
				inventory = append(inventory, mockdc.InventoryMachine{MAC: fleetMAC(d, r, i), PowerState: "on", CurrentOS: "1.0.0"})
			}
		}
		f.dcs[name] = startMockDC(t, name, creds, func(o *mockdc.Options) {
			o.RepaveDuration, o.RebootDuration = 150*time.Millisecond, 50*time.Millisecond
			o.MaxRunning = 100
			o.Inventory = inventory
			if mutate != nil {
				mutate(name, o)
			}
		})
	}
	f.ts = startWithControllers(t, creds)
	ctx := context.Background()
	c := f.ts.Client.StargateV1alpha1()
	type item struct {
		dc string
		hw *v1alpha1.Hardware
	}
	work := make(chan item)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for it := range work {
				if _, err := c.Hardwares(it.dc).Create(ctx, it.hw, metav1.CreateOptions{}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for d := range dcs {
		name := fmt.Sprintf("dc-%d", d)
		if _, err := c.Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"region": fmt.Sprintf("region-%d", d%2)}},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: f.dcs[name].URL, MaxConcurrentJobs: ptr.To[int32](50)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Templates(name).Create(ctx, &v1alpha1.Template{
			ObjectMeta: metav1.ObjectMeta{Name: "os-2"},
			Spec:       v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os-2.img"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for r := range racks {
			for i := range perRack {
				mac := fleetMAC(d, r, i)
				hw := &v1alpha1.Hardware{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("server-%d-%03d", r, i), Namespace: name,
						Labels: map[string]string{rackLabel: fmt.Sprintf("rack-%d", r), "pool": "gpu"}},
					Spec: v1alpha1.HardwareSpec{MAC: mac, IPv4: fmt.Sprintf("10.%d.%d.%d", d, r, i+1)},
				}
				if r == 0 && i < 3 {
					hw.Labels["stargate.io/canary"] = "true"
				}
				f.domainOf[mac] = fmt.Sprintf("%s/rack-%d", name, r)
				f.members++
				work <- item{dc: name, hw: hw}
			}
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	f.ready(t)
	return f
}

func fleetMAC(dc, rack, i int) string { return fmt.Sprintf("02:%02x:%02x:%02x:00:01", dc, rack, i) }

// ready waits until every Hardware was looked up at its datacenter (state ready).
func (f *fleet) ready(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := f.ts.Client.StargateV1alpha1().Hardwares("").List(ctx, metav1.ListOptions{FieldSelector: "status.state=ready"})
		return err == nil && len(list.Items) == f.members, nil
	})
	if err != nil {
		t.Fatalf("the fleet's %d Hardware were not all looked up: %v", f.members, err)
	}
}

func (f *fleet) create(t *testing.T, camp *v1alpha1.Campaign) *v1alpha1.Campaign {
	t.Helper()
	out, err := f.ts.Client.StargateV1alpha1().Campaigns().Create(context.Background(), camp, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fleet) get(t *testing.T, name string) *v1alpha1.Campaign {
	t.Helper()
	camp, err := f.ts.Client.StargateV1alpha1().Campaigns().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return camp
}

// waitFor polls Campaign name until cond holds.
func (f *fleet) waitFor(t *testing.T, name, what string, timeout time.Duration, cond func(*v1alpha1.Campaign) bool) *v1alpha1.Campaign {
	t.Helper()
	var camp *v1alpha1.Campaign
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got, err := f.ts.Client.StargateV1alpha1().Campaigns().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		camp = got // the last one read, for the failure message
		return cond(camp), nil
	})
	if err != nil {
		t.Fatalf("campaign %s: %s did not happen within %s; status: %+v", name, what, timeout, camp.Status)
	}
	return camp
}

func (f *fleet) patch(t *testing.T, name, patch string) {
	t.Helper()
	if _, err := f.ts.Client.StargateV1alpha1().Campaigns().Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// executions returns every job the mock datacenters ran.
func (f *fleet) executions() []mockdc.JobRecord {
	var out []mockdc.JobRecord
	for _, dc := range f.dcs {
		out = append(out, dc.Jobs()...)
	}
	return out
}

// maxConcurrent replays the mocks' jobs (start to finish) and returns the
// most that ran at once, globally, per datacenter, per rack, and the most
// racks at once.
func (f *fleet) maxConcurrent() (global int, perDC, perRack map[string]int, racks int) {
	type edge struct {
		at    time.Time
		delta int
		mac   string
	}
	var edges []edge
	for _, j := range f.executions() {
		if j.StartedAt == nil {
			continue
		}
		end := time.Now()
		if j.FinishedAt != nil {
			end = *j.FinishedAt
		}
		edges = append(edges, edge{*j.StartedAt, 1, j.MAC}, edge{end, -1, j.MAC})
	}
	// Ends before starts at the same instant: a job that ended as another began did not overlap it.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	perDC, perRack = map[string]int{}, map[string]int{}
	nowDC, nowRack := map[string]int{}, map[string]int{}
	now := 0
	for _, e := range edges {
		domain := f.domainOf[e.mac]
		dc := domain[:len(domain)-len("/rack-0")]
		now += e.delta
		nowDC[dc] += e.delta
		nowRack[domain] += e.delta
		global = max(global, now)
		perDC[dc] = max(perDC[dc], nowDC[dc])
		perRack[domain] = max(perRack[domain], nowRack[domain])
		inFlight := 0
		for _, n := range nowRack {
			if n > 0 {
				inFlight++
			}
		}
		racks = max(racks, inFlight)
	}
	return global, perDC, perRack, racks
}

// sampler lists the Campaign's unfinished Jobs every few milliseconds and
// keeps the most seen at once per scope: a Job counts from its create.
type sampler struct {
	mu             sync.Mutex
	global, racks  int
	perDC, perRack map[string]int
	samples        int
	stop           func()
	done           chan struct{}
}

func (f *fleet) sample(t *testing.T, name string) *sampler {
	s := &sampler{perDC: map[string]int{}, perRack: map[string]int{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = func() { cancel(); <-s.done }
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			list, err := f.ts.Client.StargateV1alpha1().Jobs("").List(ctx, metav1.ListOptions{
				LabelSelector: v1alpha1.CampaignLabel + "=" + name, FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
			if err == nil {
				dcs, racks := map[string]int{}, map[string]int{}
				for _, j := range list.Items {
					dcs[j.Namespace]++
					racks[j.Namespace+"/"+rackOfName(j.Spec.HardwareRef.Name)]++
				}
				s.mu.Lock()
				s.samples++
				s.global = max(s.global, len(list.Items))
				s.racks = max(s.racks, len(racks))
				for k, n := range dcs {
					s.perDC[k] = max(s.perDC[k], n)
				}
				for k, n := range racks {
					s.perRack[k] = max(s.perRack[k], n)
				}
				s.mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel() })
	return s
}

// rackOfName reads the rack from a fleet Hardware name (server-<rack>-<i>).
func rackOfName(hw string) string {
	var r, i int
	if _, err := fmt.Sscanf(hw, "server-%d-%d", &r, &i); err != nil {
		return "?"
	}
	return fmt.Sprintf("rack-%d", r)
}

func condition(camp *v1alpha1.Campaign, typ string) *metav1.Condition {
	return meta.FindStatusCondition(camp.Status.Conditions, typ)
}

func percent(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
func count(n int) *intstr.IntOrString      { v := intstr.FromInt32(int32(n)); return &v }

// TestCampaignKeepsItsLimits: 1,008 Hardware over 4 datacenters with 3
// racks each, repaved in waves (a canary wave by label first). At no
// sampled instant, and at no instant of the datacenters' own records, do
// more members run than maxUnavailable allows globally, per datacenter and
// per rack, nor more racks than maxFailureDomainsInFlight; every member is
// repaved exactly once, the Campaign completes, and its Jobs are released.
func TestCampaignKeepsItsLimits(t *testing.T) {
	f := startFleet(t, 4, 3, 84, nil)
	const global, perDC, perRack, racks = 12, 4, 2, 8
	f.create(t, &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2"},
		Spec: v1alpha1.CampaignSpec{
			Operation: v1alpha1.OperationRepave, TemplateRef: &v1alpha1.LocalObjectReference{Name: "os-2"},
			HardwareSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "gpu"}},
			Waves: []v1alpha1.CampaignWave{
				{Size: intstr.FromInt32(3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"stargate.io/canary": "true"}}},
				{Size: intstr.FromString("25%")},
			},
			MaxUnavailable:            v1alpha1.CampaignMaxUnavailable{Global: count(global), PerDatacenter: count(perDC), PerFailureDomain: count(perRack)},
			FailureDomainLabel:        rackLabel,
			MaxFailureDomainsInFlight: ptr.To[int32](racks),
		},
	})
	s := f.sample(t, "os-2")
	camp := f.waitFor(t, "os-2", "Complete", 5*time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Phase == v1alpha1.CampaignComplete })
	s.stop()

	if got := camp.Status.Counts; got.Targets != int32(f.members) || got.Succeeded != int32(f.members) || got.Pending+got.Running+got.Failed != 0 {
		t.Errorf("counts %+v, want all %d succeeded", got, f.members)
	}
	if len(camp.Status.Plan) != 5 || camp.Status.Plan[0].Members != 3 {
		t.Errorf("plan: %d waves, first of %d members; want a canary of 3 and 4 waves of 25%%", len(camp.Status.Plan), camp.Status.Plan[0].Members)
	}
	if c := condition(camp, v1alpha1.CampaignConditionComplete); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Complete condition %+v", c)
	}
	t.Logf("sampled %d times: at most %d Jobs at once (limit %d), per datacenter %v (limit %d), per rack %v (limit %d), %d racks (limit %d)",
		s.samples, s.global, global, s.perDC, perDC, s.perRack, perRack, s.racks, racks)
	if s.samples < 50 {
		t.Errorf("only %d samples", s.samples)
	}
	checkLimits(t, "sampled", s.global, s.perDC, s.perRack, s.racks, global, perDC, perRack, racks)
	g, dcs, rks, nracks := f.maxConcurrent()
	t.Logf("datacenters' records: at most %d running at once, per datacenter %v, per rack %v, %d racks", g, dcs, rks, nracks)
	checkLimits(t, "executed", g, dcs, rks, nracks, global, perDC, perRack, racks)
	if g < global/2 {
		t.Errorf("at most %d ran at once: the Campaign did not use its room (%d)", g, global)
	}

	runs := map[string]int{}
	for _, j := range f.executions() {
		runs[j.MAC]++
	}
	if len(runs) != f.members {
		t.Errorf("%d machines repaved, want %d", len(runs), f.members)
	}
	for mac, n := range runs {
		if n != 1 {
			t.Errorf("machine %s repaved %d times", mac, n)
		}
	}
	// The canaries went first: the first 3 executions are the canary machines.
	first := f.executions()
	slices.SortFunc(first, func(a, b mockdc.JobRecord) int { return a.SubmittedAt.Compare(b.SubmittedAt) })
	for _, j := range first[:3] {
		if d := f.domainOf[j.MAC]; d[len(d)-len("rack-0"):] != "rack-0" {
			t.Errorf("an early execution %s was not a canary (rack %s)", j.MAC, d)
		}
	}
	// Every Job was released by the Campaign once counted.
	list, err := f.ts.Client.StargateV1alpha1().Jobs("").List(context.Background(), metav1.ListOptions{LabelSelector: v1alpha1.CampaignLabel + "=os-2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != f.members {
		t.Errorf("%d Jobs, want %d", len(list.Items), f.members)
	}
	for _, j := range list.Items {
		if slices.Contains(j.Finalizers, v1alpha1.CampaignFinalizer) {
			t.Errorf("Job %s/%s still holds the campaign finalizer", j.Namespace, j.Name)
			break
		}
	}
}

func checkLimits(t *testing.T, how string, global int, perDC, perRack map[string]int, racks int, maxGlobal, maxDC, maxRack, maxRacks int) {
	t.Helper()
	if global > maxGlobal {
		t.Errorf("%s: %d members unavailable at once, limit %d", how, global, maxGlobal)
	}
	for k, n := range perDC {
		if n > maxDC {
			t.Errorf("%s: %d unavailable at once in %s, limit %d", how, n, k, maxDC)
		}
	}
	for k, n := range perRack {
		if n > maxRack {
			t.Errorf("%s: %d unavailable at once in %s, limit %d", how, n, k, maxRack)
		}
	}
	if racks > maxRacks {
		t.Errorf("%s: %d racks in flight at once, limit %d", how, racks, maxRacks)
	}
}

// TestCampaignFailureBudgets: a datacenter whose Jobs fail trips its own
// budget and is paused alone while the others finish; then a global budget
// of 0 stops everything at the first failure.
func TestCampaignFailureBudgets(t *testing.T) {
	f := startFleet(t, 4, 3, 10, func(dc string, o *mockdc.Options) {
		if dc == "dc-2" {
			o.Faults.JobFailureRate = 1
		}
	})
	const perDC = 2
	f.create(t, &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "reboot-all"},
		Spec: v1alpha1.CampaignSpec{
			Operation:      v1alpha1.OperationReboot,
			MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: count(perDC)},
			FailurePolicy: v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{
				PerDatacenter: count(1), Global: percent("50%")}},
		},
	})
	camp := f.waitFor(t, "reboot-all", "the others finished and dc-2 paused", 2*time.Minute, func(c *v1alpha1.Campaign) bool {
		for _, dc := range c.Status.Datacenters {
			if dc.Name != "dc-2" && dc.Counts.Succeeded != 30 {
				return false
			}
			if dc.Name == "dc-2" && (dc.PausedReason != v1alpha1.CampaignReasonFailureBudgetExceeded || dc.Counts.Running > 0) {
				return false
			}
		}
		return len(c.Status.Datacenters) == 4
	})
	if camp.Status.Phase != v1alpha1.CampaignPaused {
		t.Errorf("phase %s, want Paused (dc-2's members wait for its budget)", camp.Status.Phase)
	}
	if c := condition(camp, v1alpha1.CampaignConditionPaused); c == nil || c.Reason != v1alpha1.CampaignReasonFailureBudgetExceeded {
		t.Errorf("Paused condition %+v, want FailureBudgetExceeded naming dc-2", c)
	}
	var bad v1alpha1.CampaignCounts
	for _, dc := range camp.Status.Datacenters {
		if dc.Name == "dc-2" {
			bad = dc.Counts
		}
	}
	// Exceeding 1 trips at the 2nd failure; Jobs already running (at most
	// perDC) finish, so at most 1 + perDC failed.
	if bad.Failed < 2 || bad.Failed > 1+perDC || bad.Pending == 0 {
		t.Errorf("dc-2: %+v; want 2..%d failed and the rest pending", bad, 1+perDC)
	}
	if len(camp.Status.Failures) != int(bad.Failed) || camp.Status.Failures[0].Datacenter != "dc-2" {
		t.Errorf("failures listed: %+v", camp.Status.Failures)
	}
	time.Sleep(time.Second)
	if n := len(f.dcs["dc-2"].Jobs()); n != int(bad.Failed) {
		t.Errorf("dc-2 ran %d jobs, %d counted failed: something started while paused", n, bad.Failed)
	}

	// A global budget of 0 over region-1 (dc-1, dc-3): the first failure,
	// in dc-1, stops both datacenters.
	if err := f.dcs["dc-1"].SetFaults(mockdc.Faults{JobFailureRate: 1}); err != nil {
		t.Fatal(err)
	}
	f.create(t, &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "power-on"},
		Spec: v1alpha1.CampaignSpec{
			Operation:          v1alpha1.OperationPowerOn,
			DatacenterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "region-1"}},
			MaxUnavailable:     v1alpha1.CampaignMaxUnavailable{PerDatacenter: count(2)},
			FailurePolicy:      v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: count(0)}},
		},
	})
	camp = f.waitFor(t, "power-on", "Paused by the global budget", time.Minute, func(c *v1alpha1.Campaign) bool {
		cond := condition(c, v1alpha1.CampaignConditionPaused)
		return c.Status.Phase == v1alpha1.CampaignPaused && cond != nil && cond.Reason == v1alpha1.CampaignReasonFailureBudgetExceeded && c.Status.Counts.Running == 0
	})
	doneAtTrip := camp.Status.Counts.Succeeded + camp.Status.Counts.Failed
	ranAtTrip := len(f.dcs["dc-1"].Jobs()) + len(f.dcs["dc-3"].Jobs())
	time.Sleep(time.Second)
	camp = f.get(t, "power-on")
	if n := camp.Status.Counts.Succeeded + camp.Status.Counts.Failed; n != doneAtTrip || camp.Status.Counts.Pending == 0 {
		t.Errorf("after the global budget tripped: %d then %d done, %d pending; want nothing more started", doneAtTrip, n, camp.Status.Counts.Pending)
	}
	if n := len(f.dcs["dc-1"].Jobs()) + len(f.dcs["dc-3"].Jobs()); n != ranAtTrip {
		t.Errorf("the datacenters ran %d jobs after the trip (from %d)", n, ranAtTrip)
	}
	// Raising the budget resumes it: dc-3 finishes (dc-1's failed members,
	// in state error, count as unavailable and fill its own limit).
	if err := f.dcs["dc-1"].SetFaults(mockdc.Faults{}); err != nil {
		t.Fatal(err)
	}
	f.patch(t, "power-on", `{"spec":{"failurePolicy":{"maxFailures":{"global":"100%"}}}}`)
	f.waitFor(t, "power-on", "dc-3 finished after the budget was raised", time.Minute, func(c *v1alpha1.Campaign) bool {
		for _, dc := range c.Status.Datacenters {
			if dc.Name == "dc-3" {
				return dc.Counts.Succeeded == 30
			}
		}
		return false
	})
}

// TestCampaignWindowsAndApproval: a maintenance window that is closed holds
// every Job back (status says when it opens); once open, the first wave
// runs and the second waits for approval; approved, the Campaign completes.
func TestCampaignWindowsAndApproval(t *testing.T) {
	f := startFleet(t, 2, 2, 5, nil)
	now := time.Now().UTC()
	closed := v1alpha1.MaintenanceWindow{Start: now.Add(2 * time.Hour).Format("15:04"), End: now.Add(3 * time.Hour).Format("15:04"), TimeZone: "UTC"}
	f.create(t, &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "gated"},
		Spec: v1alpha1.CampaignSpec{
			Operation:          v1alpha1.OperationReboot,
			Waves:              []v1alpha1.CampaignWave{{Size: intstr.FromInt32(4)}, {Size: intstr.FromString("50%"), RequireApproval: true}},
			MaxUnavailable:     v1alpha1.CampaignMaxUnavailable{Global: count(3)},
			MaintenanceWindows: []v1alpha1.MaintenanceWindow{closed},
		},
	})
	camp := f.waitFor(t, "gated", "held outside its window", 30*time.Second, func(c *v1alpha1.Campaign) bool {
		return len(c.Status.Datacenters) == 2 && c.Status.Datacenters[0].PausedReason == v1alpha1.CampaignReasonOutsideWindow &&
			c.Status.Datacenters[0].NextWindow != nil && c.Status.Phase == v1alpha1.CampaignPaused
	})
	if next := camp.Status.Datacenters[0].NextWindow.Time; next.Sub(now) < 90*time.Minute || next.Sub(now) > 2*time.Hour+time.Minute {
		t.Errorf("next window %s, want about 2h from %s", next, now)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(f.executions()); n != 0 {
		t.Fatalf("%d jobs ran outside the window", n)
	}
	// Open the window now (windows may be edited on a running Campaign).
	open := fmt.Sprintf(`{"spec":{"maintenanceWindows":[{"start":%q,"end":%q,"timeZone":"UTC"}]}}`,
		now.Add(-time.Hour).Format("15:04"), now.Add(time.Hour).Format("15:04"))
	f.patch(t, "gated", open)
	camp = f.waitFor(t, "gated", "awaiting approval of wave 2", time.Minute, func(c *v1alpha1.Campaign) bool {
		cond := condition(c, v1alpha1.CampaignConditionPaused)
		return c.Status.CurrentWave == 2 && cond != nil && cond.Reason == v1alpha1.CampaignReasonAwaitingApproval
	})
	if camp.Status.Counts.Succeeded != 4 || len(f.executions()) != 4 {
		t.Errorf("wave 1: %d succeeded, %d executed; want 4", camp.Status.Counts.Succeeded, len(f.executions()))
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(f.executions()); n != 4 {
		t.Errorf("%d jobs ran before wave 2 was approved, want 4", n)
	}
	f.patch(t, "gated", `{"spec":{"approvedWaves":2}}`)
	camp = f.waitFor(t, "gated", "awaiting approval of wave 3", time.Minute, func(c *v1alpha1.Campaign) bool {
		cond := condition(c, v1alpha1.CampaignConditionPaused)
		return c.Status.CurrentWave == 3 && cond != nil && cond.Reason == v1alpha1.CampaignReasonAwaitingApproval
	})
	if camp.Status.Counts.Succeeded != 14 {
		t.Errorf("after wave 2: %d succeeded, want 14", camp.Status.Counts.Succeeded)
	}
	f.patch(t, "gated", `{"spec":{"approvedWaves":3}}`)
	f.waitFor(t, "gated", "Complete", time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Phase == v1alpha1.CampaignComplete })
	if n := len(f.executions()); n != 20 {
		t.Errorf("%d executions, want 20", n)
	}
}

// TestCampaignPauseCancelAndRestart: a paused Campaign starts nothing; a
// server restart mid-Campaign resumes from the ledger without running any
// member twice; cancel ends it Cancelled with its running Jobs cancelled.
func TestCampaignPauseCancelAndRestart(t *testing.T) {
	f := startFleet(t, 2, 2, 15, func(dc string, o *mockdc.Options) { o.RebootDuration = 400 * time.Millisecond })
	f.create(t, &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "rolling"},
		Spec: v1alpha1.CampaignSpec{
			Operation:      v1alpha1.OperationReboot,
			MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: count(3)},
		},
	})
	f.waitFor(t, "rolling", "some done", time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Counts.Succeeded >= 6 })
	f.patch(t, "rolling", `{"spec":{"paused":true}}`)
	camp := f.waitFor(t, "rolling", "Paused with nothing running", time.Minute, func(c *v1alpha1.Campaign) bool {
		return c.Status.Phase == v1alpha1.CampaignPaused && c.Status.Counts.Running == 0
	})
	ran := len(f.executions())
	time.Sleep(time.Second)
	if n := len(f.executions()); n != ran {
		t.Errorf("%d jobs ran while paused (from %d)", n, ran)
	}
	if c := condition(camp, v1alpha1.CampaignConditionPaused); c == nil || c.Reason != v1alpha1.CampaignReasonManualPause {
		t.Errorf("Paused condition %+v", c)
	}

	// Restart the server on the same data while Jobs run.
	f.patch(t, "rolling", `{"spec":{"paused":false}}`)
	f.waitFor(t, "rolling", "running again", time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Counts.Running > 0 })
	f.ts.Stop()
	f.ts = startControllersOn(t, f.ts.DataDir, f.creds)
	f.waitFor(t, "rolling", "Complete after the restart", 2*time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Phase == v1alpha1.CampaignComplete })
	runs := map[string]int{}
	for _, j := range f.executions() {
		runs[j.MAC]++
	}
	if len(runs) != 60 {
		t.Errorf("%d machines rebooted, want 60", len(runs))
	}
	for mac, n := range runs {
		if n != 1 {
			t.Errorf("machine %s rebooted %d times across the restart", mac, n)
		}
	}

	// Cancel a second Campaign mid-way.
	f.create(t, &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "doomed"},
		Spec:       v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: count(2)}},
	})
	f.waitFor(t, "doomed", "running", time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Counts.Running > 0 })
	f.patch(t, "doomed", `{"spec":{"cancel":true}}`)
	camp = f.waitFor(t, "doomed", "Cancelled", time.Minute, func(c *v1alpha1.Campaign) bool { return c.Status.Phase == v1alpha1.CampaignCancelled })
	if camp.Status.Counts.Cancelled == 0 || camp.Status.Counts.Pending != 0 || camp.Status.Counts.Running != 0 {
		t.Errorf("cancelled campaign counts %+v", camp.Status.Counts)
	}
	// Deleting it releases its Jobs and drops its ledger.
	if err := f.ts.Client.StargateV1alpha1().Campaigns().Delete(context.Background(), "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cancelled campaign is gone", func() bool {
		_, err := f.ts.Client.StargateV1alpha1().Campaigns().Get(context.Background(), "doomed", metav1.GetOptions{})
		return err != nil
	})
}
