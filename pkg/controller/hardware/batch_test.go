package hardware

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
)

// hookedBatchDC runs onLookup inside LookupMachines, before the datacenter answers.
type hookedBatchDC struct {
	*fake.Client
	onLookup func()
}

func (h *hookedBatchDC) LookupMachines(ctx context.Context, macs []string) (map[string]*datacenter.MachineState, error) {
	if h.onLookup != nil {
		h.onLookup()
	}
	return h.Client.LookupMachines(ctx, macs)
}

// fleet is n idle Hardware (hw-0000...), every other one known to the
// datacenter (ready on 1.0.0), plus one held by a running Job since just now
// and one held for long (its lock is checked on its own).
func fleet(dc *fake.Client, n int) []runtime.Object {
	var objs []runtime.Object
	for i := range n {
		mac := fmt.Sprintf("aa:bb:cc:00:%02x:%02x", i/256, i%256)
		objs = append(objs, hw(fmt.Sprintf("hw-%04d", i), mac, func(h *v1alpha1.Hardware) { h.ResourceVersion = "1" }))
		if i%2 == 0 {
			dc.AddMachine(datacenter.MachineState{MAC: mac, State: "ready", CurrentOS: "1.0.0", PowerState: datacenter.PowerOn})
		}
	}
	held := func(since time.Duration) func(*v1alpha1.Hardware) {
		return func(h *v1alpha1.Hardware) {
			h.ResourceVersion = "1"
			h.Status.ActiveJob, h.Status.State = "repave-1", v1alpha1.HardwareStateProvisioning
			h.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HardwareConditionReserved, Status: metav1.ConditionTrue,
				Reason: "JobActive", LastTransitionTime: metav1.NewTime(time.Now().Add(-since))}}
		}
	}
	return append(objs, hw("zz-busy", "aa:bb:cc:ff:00:01", held(time.Second)), hw("zz-held-long", "aa:bb:cc:ff:00:02", held(time.Hour)))
}

func sweepOnce(c *Controller) {
	c.sweepDatacenter(context.Background(), "dc-west", time.Now().Add(time.Minute), time.Now,
		func(context.Context, time.Duration) bool { return true })
}

func hardwareStates(t *testing.T, client *clientfake.Clientset) map[v1alpha1.HardwareState]int {
	t.Helper()
	list, err := client.StargateV1alpha1().Hardwares("dc-west").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[v1alpha1.HardwareState]int{}
	for _, h := range list.Items {
		out[h.Status.State]++
	}
	return out
}

// A datacenter that offers the batch lookup: a sweep of 1,000 idle Hardware
// in pages of 500 looks them up in 2 requests, not 1,000, and writes what
// changed; held Hardware is not looked up, one held for long is queued for
// its lock to be checked. A second sweep finds nothing changed and writes
// nothing.
func TestSweepLooksUpAPageInOneBatch(t *testing.T) {
	const n = 1000
	dc := fake.New()
	c, client := newSweepControllerWith(t, dc, 500, fleet(dc, n)...)
	enforceResourceVersions(client)
	sweepOnce(c)
	if got := dc.Calls(fake.MethodLookupMachines); got != 2 {
		t.Errorf("%d batch lookups for %d Hardware in pages of 500, want 2", got, n)
	}
	if got := dc.Calls(fake.MethodMachine); got != 0 {
		t.Errorf("%d single lookups, want 0", got)
	}
	want := map[v1alpha1.HardwareState]int{v1alpha1.HardwareStateReady: n / 2, v1alpha1.HardwareStateUnknown: n / 2,
		v1alpha1.HardwareStateProvisioning: 2}
	if got := hardwareStates(t, client); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("states after the sweep %v, want %v", got, want)
	}
	if got := c.queue.Len(); got != 1 {
		t.Errorf("%d Hardware queued, want 1 (the one held for long)", got)
	}

	client.ClearActions()
	sweepOnce(c)
	writes := 0
	for _, a := range client.Actions() {
		if a.Matches("update", "hardwares") {
			writes++
		}
	}
	if got := dc.Calls(fake.MethodLookupMachines); got != 4 || writes != 0 {
		t.Errorf("second sweep: %d batch lookups in all (want 4), %d writes (want 0: nothing changed)", got, writes)
	}
}

// A datacenter without the batch lookup: the sweep queues every idle
// Hardware, each looked up on its own (GetMachine), as before.
func TestSweepFallsBackToSingleLookups(t *testing.T) {
	const n = 20
	dc := fake.New()
	dc.SetBatch(false)
	c, client := newSweepControllerWith(t, dc, 500, fleet(dc, n)...)
	sweepOnce(c)
	if got := c.queue.Len(); got != n+1 {
		t.Fatalf("%d Hardware queued, want %d (every idle one and the one held for long)", got, n+1)
	}
	for i := range n {
		if _, err := c.sync(context.Background(), fmt.Sprintf("dc-west/hw-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := dc.Calls(fake.MethodMachine); got != n {
		t.Errorf("%d single lookups, want %d", got, n)
	}
	want := map[v1alpha1.HardwareState]int{v1alpha1.HardwareStateReady: n / 2, v1alpha1.HardwareStateUnknown: n / 2,
		v1alpha1.HardwareStateProvisioning: 2}
	if got := hardwareStates(t, client); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", got, want)
	}

	// A batch lookup that fails leaves the page to single lookups too.
	dc.SetBatch(true)
	dc.FailNext(fake.MethodLookupMachines, fake.Transient())
	c2, _ := newSweepControllerWith(t, dc, 500, fleet(fake.New(), n)...)
	sweepOnce(c2)
	if got := c2.queue.Len(); got != n+1 {
		t.Errorf("after a failed batch lookup %d Hardware queued, want %d", got, n+1)
	}
}

// A Hardware written while the batch lookup is under way (a Job started on
// it) keeps what was written: its lookup is dropped and it is looked up again
// on its own. The others of the page are written.
func TestBatchLookupDoesNotOverwriteANewerStatus(t *testing.T) {
	ctx := context.Background()
	base := fake.New()
	dc := &hookedBatchDC{Client: base}
	c, client := newSweepControllerWith(t, dc, 500, fleet(base, 4)...)
	enforceResourceVersions(client)
	dc.onLookup = func() {
		dc.onLookup = nil
		h, err := client.StargateV1alpha1().Hardwares("dc-west").Get(ctx, "hw-0000", metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		h.Status.ActiveJob, h.Status.State = "reboot-1", v1alpha1.HardwareStateRebooting
		if _, err := client.StargateV1alpha1().Hardwares("dc-west").UpdateStatus(ctx, h, metav1.UpdateOptions{}); err != nil {
			t.Errorf("the Job's start: %v", err)
		}
	}
	sweepOnce(c)
	got, _ := client.StargateV1alpha1().Hardwares("dc-west").Get(ctx, "hw-0000", metav1.GetOptions{})
	if got.Status.ActiveJob != "reboot-1" || got.Status.State != v1alpha1.HardwareStateRebooting {
		t.Errorf("the Job's status was overwritten by an older lookup: %+v", got.Status)
	}
	if other, _ := client.StargateV1alpha1().Hardwares("dc-west").Get(ctx, "hw-0002", metav1.GetOptions{}); other.Status.State != v1alpha1.HardwareStateReady {
		t.Errorf("another Hardware of the page: %+v", other.Status)
	}
	// Queued again after conflictRequeue, with the one held for long.
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return c.queue.Len() == 2, nil
	}); err != nil {
		t.Errorf("%d Hardware queued, want 2 (the one written meanwhile, the one held for long)", c.queue.Len())
	}
}

// A replica that is not leading looks up but writes nothing: the page goes
// to the queue, whose syncs retry.
func TestBatchLookupWritesOnlyWhileLeading(t *testing.T) {
	dc := fake.New()
	c, client := newSweepControllerWith(t, dc, 500, fleet(dc, 6)...)
	lost := errors.New("lost the leader election")
	c.opts.Leading = func(context.Context, string) error { return lost }
	client.ClearActions()
	sweepOnce(c)
	for _, a := range client.Actions() {
		if a.Matches("update", "hardwares") {
			t.Errorf("a write while not leading: %v", a)
		}
	}
	if got := c.queue.Len(); got != 7 {
		t.Errorf("%d Hardware queued, want 7 (the page, and the one held for long)", got)
	}
}
