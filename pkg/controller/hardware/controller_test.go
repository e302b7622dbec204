package hardware

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

func hw(name, mac string, mutate ...func(*v1alpha1.Hardware)) *v1alpha1.Hardware {
	h := &v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: name}, Spec: v1alpha1.HardwareSpec{MAC: mac}}
	for _, m := range mutate {
		m(h)
	}
	return h
}

func TestLookupByMAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := clientfake.NewClientset(
		&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"}, Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}},
		hw("known", "aa:bb:cc:dd:ee:01"), hw("stranger", "aa:bb:cc:dd:ee:02"),
		hw("busy", "aa:bb:cc:dd:ee:03", func(h *v1alpha1.Hardware) {
			h.Status.ActiveJob, h.Status.State = "repave-1", v1alpha1.HardwareStateProvisioning
		}),
		&v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-nowhere", Name: "lost"}, Spec: v1alpha1.HardwareSpec{MAC: "aa:bb:cc:dd:ee:04"}})
	dc := fake.New()
	dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:01", State: "ready", CurrentOS: "1.0.0", PowerState: datacenter.PowerOn})
	dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:03", State: "off", CurrentOS: "1.0.0"})
	factory := informers.NewSharedInformerFactory(client, 0)
	v1 := factory.Stargate().V1alpha1()
	c, err := New(client, v1.Datacenters(), func(*v1alpha1.Datacenter) (datacenter.Client, error) { return dc, nil },
		Options{Recheck: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	want := map[string]struct {
		state v1alpha1.HardwareState
		os    string
	}{
		"dc-west/known":    {v1alpha1.HardwareStateReady, "1.0.0"},
		"dc-west/stranger": {v1alpha1.HardwareStateUnknown, ""},
		"dc-west/busy":     {v1alpha1.HardwareStateProvisioning, ""}, // the Job controller owns it
		"dc-nowhere/lost":  {"", ""},                                 // no Datacenter to ask
	}
	for key, w := range want {
		after, err := c.sync(ctx, key)
		if err != nil || after != 0 { // no timer per Hardware: the sweep comes back
			t.Errorf("%s: requeue %s, %v", key, after, err)
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		got, _ := client.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
		if got.Status.State != w.state || got.Status.CurrentOS != w.os {
			t.Errorf("%s: state %q os %q, want %q %q", key, got.Status.State, got.Status.CurrentOS, w.state, w.os)
		}
	}
	if n := dc.Calls(fake.MethodMachine); n != 2 {
		t.Errorf("%d lookups, want 2 (not the busy one, not the one without a Datacenter)", n)
	}
}

// enforceResourceVersions makes the fake clientset check an update's
// resourceVersion as the API server does (the fake's tracker does not), and
// bump it on every write.
func enforceResourceVersions(client *clientfake.Clientset) {
	client.PrependReactor("update", "hardwares", func(action clienttesting.Action) (bool, runtime.Object, error) {
		update := action.(clienttesting.UpdateAction)
		obj, err := meta.Accessor(update.GetObject())
		if err != nil {
			return true, nil, err
		}
		stored, err := client.Tracker().Get(action.GetResource(), action.GetNamespace(), obj.GetName())
		if err != nil {
			return true, nil, err
		}
		current, _ := meta.Accessor(stored)
		if rv := obj.GetResourceVersion(); rv != "" && rv != current.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(action.GetResource().GroupResource(), obj.GetName(),
				errors.New("the object has been modified"))
		}
		n, _ := strconv.Atoi(current.GetResourceVersion())
		obj.SetResourceVersion(strconv.Itoa(n + 1))
		return false, nil, nil // the tracker stores it
	})
}

// hookedDC runs onLookup inside GetMachine, before the datacenter answers.
type hookedDC struct {
	*fake.Client
	onLookup func()
}

func (h *hookedDC) GetMachine(ctx context.Context, mac string) (*datacenter.MachineState, error) {
	if h.onLookup != nil {
		h.onLookup()
	}
	return h.Client.GetMachine(ctx, mac)
}

type lookupEnv struct {
	client *clientfake.Clientset
	dc     *hookedDC
	c      *Controller
}

// newLookupEnv runs a lookup controller over dc-west and its Hardware m1
// (resourceVersion 10, reported ready on 1.0.0) with opts.
func newLookupEnv(t *testing.T, opts Options) *lookupEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m1 := hw("m1", "aa:bb:cc:dd:ee:01", func(h *v1alpha1.Hardware) {
		h.ResourceVersion = "10"
		h.Status.State, h.Status.CurrentOS = v1alpha1.HardwareStateReady, "1.0.0"
	})
	e := &lookupEnv{client: clientfake.NewClientset(
		&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"}, Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}},
		m1), dc: &hookedDC{Client: fake.New()}}
	enforceResourceVersions(e.client)
	factory := informers.NewSharedInformerFactory(e.client, 0)
	v1 := factory.Stargate().V1alpha1()
	var err error
	e.c, err = New(e.client, v1.Datacenters(), func(*v1alpha1.Datacenter) (datacenter.Client, error) { return e.dc, nil }, opts)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return e
}

func (e *lookupEnv) live(t *testing.T) *v1alpha1.Hardware {
	t.Helper()
	got, err := e.client.StargateV1alpha1().Hardwares("dc-west").Get(context.Background(), "m1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitForCache is a no-op: the controller reads Hardware from the API.
func (e *lookupEnv) waitForCache(t *testing.T) {}

func (e *lookupEnv) statusWrites() int {
	n := 0
	for _, a := range e.client.Actions() {
		if a.Matches("update", "hardwares") && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// A Job that starts and finishes while a lookup is under way leaves a newer
// status than the lookup saw: the lookup's result is dropped, not written over it.
func TestLookupDoesNotOverwriteANewerStatus(t *testing.T) {
	ctx := context.Background()
	e := newLookupEnv(t, Options{Recheck: time.Minute})
	e.dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:01", State: "rebooting", CurrentOS: "1.0.0"})
	// While the datacenter looks the machine up, a Job repaves it to 2.0.0
	// and records its result; the datacenter's answer is from before.
	e.dc.onLookup = func() {
		e.dc.onLookup = nil
		hw := e.live(t)
		hw.Status.ActiveJob, hw.Status.State = "repave-1", v1alpha1.HardwareStateProvisioning
		hw, err := e.client.StargateV1alpha1().Hardwares("dc-west").UpdateStatus(ctx, hw, metav1.UpdateOptions{})
		if err != nil {
			t.Errorf("the Job's start: %v", err)
			return
		}
		hw.Status.ActiveJob, hw.Status.State, hw.Status.CurrentOS = "", v1alpha1.HardwareStateReady, "2.0.0"
		if _, err := e.client.StargateV1alpha1().Hardwares("dc-west").UpdateStatus(ctx, hw, metav1.UpdateOptions{}); err != nil {
			t.Errorf("the Job's end: %v", err)
		}
	}
	jobResult := func() *v1alpha1.Hardware {
		h := hw("m1", "")
		h.Status.State, h.Status.CurrentOS = v1alpha1.HardwareStateReady, "2.0.0"
		return h
	}()

	after, err := e.c.sync(ctx, "dc-west/m1")
	if err != nil || after <= 0 {
		t.Errorf("a lookup overtaken by a Job: requeue %s, %v; want it looked up again later, without an error", after, err)
	}
	if got := e.live(t); !apiequality.Semantic.DeepEqual(got.Status, jobResult.Status) {
		t.Fatalf("the Job's result was overwritten by an older lookup: %+v", got.Status)
	}
	if n := e.dc.Calls(fake.MethodMachine); n != 1 {
		t.Errorf("%d lookups, want 1 (a conflict drops the lookup, it does not retry the write)", n)
	}

	// Looked up again with the cache up to date, the datacenter's answer is written.
	e.waitForCache(t)
	e.dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:01", State: "off", CurrentOS: "2.0.0"})
	if _, err := e.c.sync(ctx, "dc-west/m1"); err != nil {
		t.Fatal(err)
	}
	if got := e.live(t); got.Status.State != v1alpha1.HardwareStateOff || got.Status.CurrentOS != "2.0.0" {
		t.Errorf("the next lookup: %+v", got.Status)
	}
}

// A replica that is not leading (a paused former leader) looks up but does not write.
func TestLookupWritesOnlyWhileLeading(t *testing.T) {
	ctx := context.Background()
	lost := errors.New("lost the leader election")
	var leading error = lost
	e := newLookupEnv(t, Options{Recheck: time.Minute, Leading: func(context.Context, string) error { return leading }})
	e.dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:01", State: "off", CurrentOS: "1.0.0"})

	if _, err := e.c.sync(ctx, "dc-west/m1"); !errors.Is(err, lost) {
		t.Errorf("sync while not leading: %v, want %v", err, lost)
	}
	if n := e.statusWrites(); n != 0 {
		t.Errorf("%d status writes while not leading", n)
	}
	if got := e.live(t); got.Status.State != v1alpha1.HardwareStateReady {
		t.Errorf("written while not leading: %+v", got.Status)
	}

	leading = nil
	if _, err := e.c.sync(ctx, "dc-west/m1"); err != nil {
		t.Fatal(err)
	}
	if n, got := e.statusWrites(), e.live(t); n != 1 || got.Status.State != v1alpha1.HardwareStateOff {
		t.Errorf("leading: %d writes, status %+v", n, got.Status)
	}
}

// A Hardware still held, long after, by a Job that finished (its release
// was lost to a crash) gets that Job written again, which makes the server
// release it with the Job's result. Held by an unfinished Job, recently, or
// by a Job that is gone, it is left alone.
func TestLostReleasesAreRedone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := func(job string, since time.Duration) func(*v1alpha1.Hardware) {
		return func(h *v1alpha1.Hardware) {
			h.Status.ActiveJob, h.Status.State = job, v1alpha1.HardwareStateRebooting
			h.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HardwareConditionReserved, Status: metav1.ConditionTrue,
				Reason: "JobActive", LastTransitionTime: metav1.NewTime(time.Now().Add(-since))}}
		}
	}
	job := func(name string, phase v1alpha1.JobPhase) *v1alpha1.Job {
		return &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: name}, Status: v1alpha1.JobStatus{Phase: phase}}
	}
	client := clientfake.NewClientset(
		&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"}, Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}},
		hw("lost-release", "aa:bb:cc:dd:ee:01", held("done", 10*time.Minute)), job("done", v1alpha1.JobSucceeded),
		hw("just-finished", "aa:bb:cc:dd:ee:02", held("done-now", 10*time.Second)), job("done-now", v1alpha1.JobFailed),
		hw("long-job", "aa:bb:cc:dd:ee:03", held("running", 10*time.Minute)), job("running", v1alpha1.JobRunning),
		hw("gone", "aa:bb:cc:dd:ee:04", held("deleted", 10*time.Minute)),
		// A running reboot whose Hardware never turned busy (that write was lost).
		hw("lost-busy", "aa:bb:cc:dd:ee:05", held("rebooting", 10*time.Minute), func(h *v1alpha1.Hardware) { h.Status.State = v1alpha1.HardwareStateReady }),
		&v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: "rebooting"},
			Spec: v1alpha1.JobSpec{Operation: v1alpha1.OperationReboot}, Status: v1alpha1.JobStatus{Phase: v1alpha1.JobRunning}})
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, factory.Stargate().V1alpha1().Datacenters(), func(*v1alpha1.Datacenter) (datacenter.Client, error) { return fake.New(), nil },
		Options{Recheck: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	client.ClearActions()
	for _, name := range []string{"lost-release", "just-finished", "long-job", "gone", "lost-busy"} {
		if _, err := c.sync(ctx, "dc-west/"+name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var written []string
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" {
			written = append(written, a.GetResource().Resource+"/"+a.GetSubresource()+" "+a.(clienttesting.UpdateAction).GetObject().(metav1.Object).GetName())
		}
	}
	if len(written) != 2 || written[0] != "jobs/status done" || written[1] != "jobs/status rebooting" {
		t.Errorf("writes %v, want the statuses of the finished Job done and of the running Job rebooting written again", written)
	}
}
