// Package hardware looks each Hardware up at its datacenter, by MAC, to fill
// status.state and status.currentOS when no Job is running on it: when it is
// new or its spec changed (a watch), and again on a paced sweep of each
// datacenter every recheck interval. It keeps no copy of the Hardware: at a
// million servers that copy would be most of a replica's memory, and a sweep
// reads one page of a datacenter at a time.
package hardware

import (
	"context"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	"stargate.io/stargate/pkg/controller/dcclients"
	"stargate.io/stargate/pkg/datacenter"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions/stargate/v1alpha1"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// Controller looks Hardware up at its datacenter.
type Controller struct {
	client    clientset.Interface
	dcs       listers.DatacenterLister
	synced    []cache.InformerSynced
	queue     *controller.Queue
	clientFor dcclients.ClientFor
	opts      Options
}

// Options tune the lookup controller.
type Options struct {
	// Recheck is how often an idle Hardware is looked up again: each
	// datacenter's Hardware is swept once per Recheck, its pages spread over
	// it. Default 5m.
	Recheck time.Duration
	// PageSize is how many Hardware a sweep reads at a time. Default 500.
	PageSize int64
	// Leading, when set, is asked right before each status write; an error
	// (this replica lost the leader election) stops the sync there, so a
	// paused former leader writes nothing. Nil: always leading.
	Leading func(ctx context.Context, datacenter string) error
	// Owns, when set, says whether this replica drives a datacenter now:
	// only its Hardware are looked up here. Nil: every datacenter.
	Owns func(datacenter string) bool
}

// DefaultRecheck is Options.Recheck when unset.
const DefaultRecheck = 5 * time.Minute

// conflictRequeue is how soon a Hardware is looked up again after its status
// changed while it was being looked up (the lookup is dropped, not written).
const conflictRequeue = time.Second

// New returns a controller that looks every idle Hardware up each opts.Recheck.
func New(client clientset.Interface, dcInformer informers.DatacenterInformer, clientFor dcclients.ClientFor, opts Options) (*Controller, error) {
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	if opts.Leading == nil {
		opts.Leading = func(context.Context, string) error { return nil }
	}
	if opts.Owns == nil {
		opts.Owns = func(string) bool { return true }
	}
	c := &Controller{client: client, dcs: dcInformer.Lister(), clientFor: clientFor,
		opts: opts, synced: []cache.InformerSynced{dcInformer.Informer().HasSynced}}
	c.queue = controller.NewQueue("stargate-hardware", c.sync)
	return c, nil
}

// Run looks Hardware up until ctx is done: the watch, the sweeps and the workers.
func (c *Controller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.watch(ctx) })
	wg.Go(func() { c.sweep(ctx, sleep) })
	c.queue.Run(ctx, 2, c.synced...)
	wg.Wait()
}

// needsLookup reports a Hardware whose status does not yet reflect its spec:
// new (never looked up) or changed (a new MAC) since its last lookup.
func needsLookup(hw *v1alpha1.Hardware) bool {
	return hw.Status.ActiveJob == "" && (hw.Status.State == "" || hw.Status.ObservedGeneration != hw.Generation)
}

// watch enqueues, as they happen, the Hardware that need a lookup. It keeps
// nothing: an event is judged on the object it carries. When the watch ends
// (its resourceVersion compacted away) it starts again from now; what it
// missed, the sweep finds.
func (c *Controller) watch(ctx context.Context) {
	hardwares := c.client.StargateV1alpha1().Hardwares(metav1.NamespaceAll)
	for ctx.Err() == nil {
		list, err := hardwares.List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			if ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Listing Hardware to start watching it")
			}
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		started := time.Now()
		w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
			WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
				return hardwares.Watch(ctx, options)
			}})
		if err != nil {
			klog.FromContext(ctx).Error(err, "Watching Hardware")
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		for event := range w.ResultChan() {
			if hw, ok := event.Object.(*v1alpha1.Hardware); ok && (event.Type == watch.Added || event.Type == watch.Modified) &&
				needsLookup(hw) && c.opts.Owns(hw.Namespace) {
				c.queue.Enqueue(hw)
			}
		}
		w.Stop()
		if time.Since(started) < time.Second && !sleep(ctx, time.Second) { // refused at once (e.g. 403): no hot loop
			return
		}
	}
}

// LookUpPending queues the Hardware of datacenter whose status does not yet
// reflect their spec (new, or a new MAC), reading it a page at a time. The
// replica that starts driving a datacenter calls it: the watch drops the
// events of datacenters this replica does not drive, so those that came while
// no replica drove it (during a handoff, or before its Datacenter existed)
// would otherwise wait for a sweep, up to twice the recheck interval.
func (c *Controller) LookUpPending(ctx context.Context, datacenter string) {
	c.eachPage(ctx, datacenter, "Listing the Hardware of a datacenter this replica now drives; those awaiting a lookup wait for the next sweep",
		func(page *v1alpha1.HardwareList) bool {
			for i := range page.Items {
				if hw := &page.Items[i]; needsLookup(hw) {
					c.queue.Enqueue(hw)
				}
			}
			return true
		})
}

// eachPage reads a datacenter's Hardware a page at a time, going on past an
// expired continue token (a read may outlive etcd's compaction window: the
// server says where to go on), until the last page or until next says stop.
func (c *Controller) eachPage(ctx context.Context, datacenter, failure string, next func(*v1alpha1.HardwareList) bool) {
	hardwares := c.client.StargateV1alpha1().Hardwares(datacenter)
	opts := metav1.ListOptions{Limit: c.opts.PageSize}
	for {
		page, err := hardwares.List(ctx, opts)
		if err != nil {
			if cont, ok := controller.ContinueAfterExpiry(err); ok {
				opts.Continue = cont
				continue
			}
			if ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, failure, "datacenter", datacenter)
			}
			return
		}
		if opts.Continue = page.Continue; !next(page) || opts.Continue == "" {
			return
		}
	}
}

// sweep looks every idle Hardware up once per Recheck, each datacenter on
// its own, its pages spread evenly over the interval so the datacenters see
// a steady trickle of lookups rather than a burst.
func (c *Controller) sweep(ctx context.Context, pause func(context.Context, time.Duration) bool) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	for {
		dcs, err := c.dcs.List(labels.Everything())
		if err != nil {
			return
		}
		deadline := time.Now().Add(c.opts.Recheck)
		var wg sync.WaitGroup
		for _, dc := range dcs {
			if c.opts.Owns(dc.Name) { // the replica driving the others sweeps them
				wg.Go(func() { c.sweepDatacenter(ctx, dc.Name, deadline, time.Now, pause) })
			}
		}
		wg.Wait()
		if !pause(ctx, time.Until(deadline)) {
			return
		}
	}
}

// sweepDatacenter enqueues the idle Hardware of one datacenter, a page at a
// time, pausing between pages so that the sweep ends by deadline: each pause
// is the time left shared among the pages left (the server says how many
// items remain), so the pauses add up to at most the interval.
func (c *Controller) sweepDatacenter(ctx context.Context, datacenter string, deadline time.Time, now func() time.Time,
	pause func(context.Context, time.Duration) bool) {
	if !c.opts.Owns(datacenter) {
		return
	}
	c.eachPage(ctx, datacenter, "Sweeping Hardware", func(page *v1alpha1.HardwareList) bool {
		for _, hw := range c.lookUpPage(ctx, datacenter, page.Items, now()) {
			c.queue.Enqueue(hw)
		}
		if page.Continue == "" {
			return false
		}
		left := int64(1)
		if r := page.RemainingItemCount; r != nil && *r > 0 {
			left = (*r + c.opts.PageSize - 1) / c.opts.PageSize
		}
		// A datacenter handed over meanwhile is left to its new driver at once.
		return pause(ctx, deadline.Sub(now())/time.Duration(left+1)) && c.opts.Owns(datacenter)
	})
}

// sleep waits d, or until ctx is done (then false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// datacenterStates are the machine states that map onto Hardware states.
var datacenterStates = map[string]v1alpha1.HardwareState{
	"ready": v1alpha1.HardwareStateReady, "provisioning": v1alpha1.HardwareStateProvisioning,
	"rebooting": v1alpha1.HardwareStateRebooting, "off": v1alpha1.HardwareStateOff, "error": v1alpha1.HardwareStateError,
}

// sync looks a Hardware up and records what the datacenter said. The write is
// conditional on the resourceVersion the Hardware had before the lookup: if
// anything wrote it meanwhile (a Job started or finished), the lookup may be
// older than that and is dropped; the Hardware is looked up again soon.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || !c.opts.Owns(ns) {
		return 0, nil
	}
	dc, err := c.dcs.Get(ns)
	if err != nil {
		return 0, nil // no Datacenter yet: nothing to ask; the sweep comes back
	}
	// Served from the watch cache (resourceVersion 0): the write below is
	// conditional on exactly what was read, so an old read costs a retry only.
	hw, err := c.client.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if hw.Status.ActiveJob != "" {
		// The Job owns its status meanwhile; the sweep comes back.
		return 0, c.releaseFinished(ctx, hw)
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return 0, err
	}
	machine, err := client.GetMachine(ctx, hw.Spec.MAC)
	switch {
	case datacenter.IsNotFound(err):
		machine = nil
	case err != nil:
		return 0, err
	}
	return c.record(ctx, hw, machine)
}

// record writes what the datacenter said of hw's machine (nil: it does not
// know it) into hw's status, if that changes it. The write is conditional on
// hw's resourceVersion, read before the machine was looked up: a Hardware
// written meanwhile (a Job started or finished) drops the lookup, and is
// looked up again after conflictRequeue.
func (c *Controller) record(ctx context.Context, hw *v1alpha1.Hardware, machine *datacenter.MachineState) (time.Duration, error) {
	updated := hw.DeepCopy() // keeps hw's resourceVersion: the write's precondition
	updated.Status.State, updated.Status.ObservedGeneration = v1alpha1.HardwareStateUnknown, hw.Generation
	if machine != nil {
		if s, ok := datacenterStates[machine.State]; ok {
			updated.Status.State = s
		}
		updated.Status.CurrentOS = machine.CurrentOS
	}
	if apiequality.Semantic.DeepEqual(hw.Status, updated.Status) {
		return 0, nil
	}
	if err := c.opts.Leading(ctx, hw.Namespace); err != nil {
		return 0, err
	}
	_, err := c.client.StargateV1alpha1().Hardwares(hw.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		klog.FromContext(ctx).V(2).Info("Hardware changed during its lookup; looking it up again", "hardware", klog.KObj(hw))
		return conflictRequeue, nil
	case apierrors.IsNotFound(err):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return 0, nil // the next sweep looks again
}

// staleLockAge is how long a Hardware must have been held before a sweep
// checks that its Job is unfinished: far longer than the instant between a
// Job's last write and the release that follows it.
const staleLockAge = 2 * time.Minute

// lockedSince is how long hw has been held (0 if it is not).
func lockedSince(hw *v1alpha1.Hardware, now time.Time) time.Duration {
	c := meta.FindStatusCondition(hw.Status.Conditions, v1alpha1.HardwareConditionReserved)
	if hw.Status.ActiveJob == "" || c == nil || c.Status != metav1.ConditionTrue {
		return 0
	}
	return now.Sub(c.LastTransitionTime.Time)
}

// releaseFinished repairs the lock of a Hardware held by a Job that has
// finished, whose release was lost (the server died between the Job's last
// write and the release that follows it): the server releases a finished
// Job's Hardware, with its result, on every write of that Job, so a write
// that changes nothing is enough. A lock naming a Job that is gone is left
// to the next Job on the Hardware, which repairs it.
func (c *Controller) releaseFinished(ctx context.Context, hw *v1alpha1.Hardware) error {
	if lockedSince(hw, time.Now()) <= staleLockAge {
		return nil
	}
	jobs := c.client.StargateV1alpha1().Jobs(hw.Namespace)
	job, err := jobs.Get(ctx, hw.Status.ActiveJob, metav1.GetOptions{ResourceVersion: "0"}) // finished is final: a cached read will do
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case job.Status.Phase == v1alpha1.JobRunning && busyState(job.Spec.Operation) != "" && hw.Status.State != busyState(job.Spec.Operation):
		// Running, and the write that marks its Hardware busy was lost:
		// writing the Job again redoes it too.
	case job.Status.Phase != v1alpha1.JobSucceeded && job.Status.Phase != v1alpha1.JobFailed:
		return nil
	}
	if err := c.opts.Leading(ctx, hw.Namespace); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Writing again a Job whose effect on its Hardware was lost", "hardware", klog.KObj(hw), "job", job.Name, "phase", job.Status.Phase)
	_, err = jobs.UpdateStatus(ctx, job, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or written since: the next sweep looks again
	}
	return err
}

// busyState is the state the server gives a Hardware while a Job of op runs
// on it ("" when it leaves the state alone): joblock.FollowJob.
func busyState(op v1alpha1.Operation) v1alpha1.HardwareState {
	switch op {
	case v1alpha1.OperationRepave:
		return v1alpha1.HardwareStateProvisioning
	case v1alpha1.OperationReboot:
		return v1alpha1.HardwareStateRebooting
	}
	return ""
}
