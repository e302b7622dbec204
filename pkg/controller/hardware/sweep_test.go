package hardware

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

// paginate makes the fake clientset page Hardware lists as the API server
// does (limit, continue, remainingItemCount); the fake returns all at once.
// The first continue token it hands out expires, as one does when a sweep
// outlives etcd's compaction window: the 410 carries where to go on from.
func paginate(client *clientfake.Clientset) {
	expired := false
	client.PrependReactor("list", "hardwares", func(action clienttesting.Action) (bool, runtime.Object, error) {
		opts := action.(clienttesting.ListActionImpl).GetListOptions()
		if opts.Limit == 0 {
			return false, nil, nil
		}
		if opts.Continue != "" && !strings.HasPrefix(opts.Continue, "~") && !expired {
			expired = true
			return true, nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 410,
				Reason: metav1.StatusReasonExpired, Message: "continue token expired", ListMeta: metav1.ListMeta{Continue: "~" + opts.Continue}}}
		}
		opts.Continue = strings.TrimPrefix(opts.Continue, "~")
		obj, err := client.Tracker().List(action.GetResource(), v1alpha1.SchemeGroupVersion.WithKind("Hardware"), action.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		all := obj.(*v1alpha1.HardwareList)
		from, _ := strconv.Atoi(opts.Continue)
		to := min(from+int(opts.Limit), len(all.Items))
		page := &v1alpha1.HardwareList{ListMeta: metav1.ListMeta{ResourceVersion: all.ResourceVersion}, Items: all.Items[from:to]}
		if to < len(all.Items) {
			page.Continue = strconv.Itoa(to)
			page.RemainingItemCount = ptr.To(int64(len(all.Items) - to))
		}
		return true, page, nil
	})
}

func newSweepController(t *testing.T, objs ...runtime.Object) (*Controller, *clientfake.Clientset) {
	t.Helper()
	dc := fake.New()
	dc.SetBatch(false) // the per-Hardware path: batch_test.go has the batch one
	return newSweepControllerWith(t, dc, 2, objs...)
}

// newSweepControllerWith sweeps dc-west, whose datacenter is dc, in pages of pageSize.
func newSweepControllerWith(t *testing.T, dc datacenter.Client, pageSize int64, objs ...runtime.Object) (*Controller, *clientfake.Clientset) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := clientfake.NewClientset(append(objs, &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"},
		Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}})...)
	paginate(client)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, factory.Stargate().V1alpha1().Datacenters(),
		func(*v1alpha1.Datacenter) (datacenter.Client, error) { return dc, nil }, Options{Recheck: time.Minute, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return c, client
}

// A sweep reads a datacenter a page at a time, spreads its pages over the
// recheck interval, goes on past an expired continue token, and queues every
// idle Hardware (not those a Job holds).
func TestSweepIsPacedAndSkipsBusyHardware(t *testing.T) {
	var objs []runtime.Object
	for i := range 5 {
		objs = append(objs, hw(fmt.Sprintf("s%d", i), fmt.Sprintf("aa:bb:cc:dd:ee:%02x", i)))
	}
	objs = append(objs, hw("busy", "aa:bb:cc:dd:ee:99", func(h *v1alpha1.Hardware) { h.Status.ActiveJob = "repave-1" }))
	c, _ := newSweepController(t, objs...)
	var pauses []time.Duration
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c.sweepDatacenter(context.Background(), "dc-west", now.Add(time.Minute), clock, func(_ context.Context, d time.Duration) bool {
		pauses = append(pauses, d)
		now = now.Add(d) // the time it paused passes
		return true
	})
	if n := c.queue.Len(); n != 5 {
		t.Errorf("%d Hardware queued, want the 5 idle ones", n)
	}
	// 6 Hardware in pages of 2: 2 pages remain after the first, 1 after the
	// second; each pause shares the time left among the pages left and one
	// more, so the sweep ends within its interval: 20 s, then 40 s / 2.
	var total time.Duration
	for _, p := range pauses {
		total += p
	}
	if want := []time.Duration{20 * time.Second, 20 * time.Second}; len(pauses) != 2 || pauses[0] != want[0] || pauses[1] != want[1] || total > time.Minute {
		t.Errorf("pauses %v (total %s), want %v within the minute", pauses, total, want)
	}
}

// The watch queues, without keeping them, the Hardware whose status does
// not reflect their spec: new ones, and ones whose spec changed.
func TestWatchQueuesWhatNeedsALookup(t *testing.T) {
	c, client := newSweepController(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	queued := map[string]bool{}
	c.queue = controller.NewQueue("test-watch", func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		queued[key] = true
		return 0, nil
	})
	go c.queue.Run(ctx, 1)
	go c.watch(ctx)
	seen := func(name string) bool {
		mu.Lock()
		defer mu.Unlock()
		return queued["dc-west/"+name]
	}
	hardwares := client.StargateV1alpha1().Hardwares("dc-west")
	// The fake stores objects as given: give them the resourceVersions a
	// server would (a watch needs them to resume).
	rv := 100
	create := func(h *v1alpha1.Hardware) {
		rv++
		h.ResourceVersion = strconv.Itoa(rv)
		if _, err := hardwares.Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The fake's watch starts only from the exact resourceVersion of its list:
	// create a Hardware now and then until the watch is up and sees one.
	probe := ""
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		if probe != "" && seen(probe) {
			return true, nil
		}
		probe = fmt.Sprintf("probe-%d", rv)
		create(hw(probe, "aa:bb:cc:dd:ee:02"))
		return false, nil
	}); err != nil {
		t.Fatalf("a new Hardware was never queued: %v", err)
	}
	looked := hw("looked-up", "aa:bb:cc:dd:ee:01", func(h *v1alpha1.Hardware) {
		h.Generation, h.Status.ObservedGeneration, h.Status.State = 1, 1, v1alpha1.HardwareStateReady
	})
	changed := looked.DeepCopy()
	changed.Name, changed.Generation = "mac-changed", 2
	create(looked)
	create(changed)
	create(hw("fence", "aa:bb:cc:dd:ee:03")) // events come in order: once it is queued, so are the others
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return seen("fence"), nil
	}); err != nil {
		t.Fatal("the watch stopped delivering")
	}
	if !seen("mac-changed") || seen("looked-up") {
		t.Errorf("queued: changed %v (want true), already looked up %v (want false)", seen("mac-changed"), seen("looked-up"))
	}
}

// LookUpPending, called when this replica starts driving a datacenter,
// queues the Hardware whose lookup is due (new, or a new MAC) and whose watch
// events this replica dropped, reading a page at a time past an expired
// continue token; not those looked up already, nor those a Job holds.
func TestLookUpPendingQueuesWhatAwaitsALookup(t *testing.T) {
	looked := func(h *v1alpha1.Hardware) {
		h.Generation, h.Status.ObservedGeneration, h.Status.State = 1, 1, v1alpha1.HardwareStateReady
	}
	c, _ := newSweepController(t,
		hw("new-1", "aa:bb:cc:dd:ee:01"), hw("new-2", "aa:bb:cc:dd:ee:02"),
		hw("looked-up", "aa:bb:cc:dd:ee:03", looked),
		hw("mac-changed", "aa:bb:cc:dd:ee:04", looked, func(h *v1alpha1.Hardware) { h.Generation = 2 }),
		hw("busy", "aa:bb:cc:dd:ee:05", func(h *v1alpha1.Hardware) { h.Status.ActiveJob = "repave-1" }),
		hw("new-3", "aa:bb:cc:dd:ee:06"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var queued []string
	c.queue = controller.NewQueue("test-pending", func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		queued = append(queued, key)
		return 0, nil
	})
	c.LookUpPending(ctx, "dc-west")
	go c.queue.Run(ctx, 1)
	_ = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(queued) >= 4, nil
	})
	time.Sleep(100 * time.Millisecond) // anything queued beyond those shows too
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(queued)
	if want := []string{"dc-west/mac-changed", "dc-west/new-1", "dc-west/new-2", "dc-west/new-3"}; !slices.Equal(queued, want) {
		t.Errorf("queued %v, want %v", queued, want)
	}
}
