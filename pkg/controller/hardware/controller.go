// Package hardware looks each Hardware up at its datacenter, by MAC, to fill
// status.state and status.currentOS when no Job is running on it: at first
// sight, and again every recheck interval.
package hardware

import (
	"context"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
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
	hardware  listers.HardwareLister
	dcs       listers.DatacenterLister
	synced    []cache.InformerSynced
	queue     *controller.Queue
	clientFor dcclients.ClientFor
	opts      Options
}

// Options tune the lookup controller.
type Options struct {
	// Recheck is how often an idle Hardware is looked up again. Default 5m.
	Recheck time.Duration
	// Leading, when set, is asked right before each status write; an error
	// (this replica lost the leader election) stops the sync there, so a
	// paused former leader writes nothing. Nil: always leading.
	Leading func(context.Context) error
}

// DefaultRecheck is Options.Recheck when unset.
const DefaultRecheck = 5 * time.Minute

// conflictRequeue is how soon a Hardware is looked up again after its status
// changed while it was being looked up (the lookup is dropped, not written).
const conflictRequeue = time.Second

// New returns a controller that looks every idle Hardware up each opts.Recheck.
func New(client clientset.Interface, hwInformer informers.HardwareInformer, dcInformer informers.DatacenterInformer,
	clientFor dcclients.ClientFor, opts Options) (*Controller, error) {
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.Leading == nil {
		opts.Leading = func(context.Context) error { return nil }
	}
	c := &Controller{client: client, hardware: hwInformer.Lister(), dcs: dcInformer.Lister(), clientFor: clientFor,
		opts: opts, synced: []cache.InformerSynced{hwInformer.Informer().HasSynced, dcInformer.Informer().HasSynced}}
	c.queue = controller.NewQueue("stargate-hardware", c.sync)
	// New Hardware, or Hardware whose MAC changed, is looked up at once.
	_, err := hwInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.queue.Enqueue,
		UpdateFunc: func(old, obj interface{}) {
			if old.(*v1alpha1.Hardware).Spec.MAC != obj.(*v1alpha1.Hardware).Spec.MAC {
				c.queue.Enqueue(obj)
			}
		},
	})
	return c, err
}

// Run looks Hardware up until ctx is done.
func (c *Controller) Run(ctx context.Context) { c.queue.Run(ctx, 2, c.synced...) }

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
	if err != nil {
		return 0, nil
	}
	hw, err := c.hardware.Hardwares(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if hw.Status.ActiveJob != "" {
		return c.opts.Recheck, nil // the Job controller owns its status meanwhile
	}
	dc, err := c.dcs.Get(ns)
	if err != nil {
		return c.opts.Recheck, nil // no Datacenter yet: nothing to ask
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return 0, err
	}
	updated := hw.DeepCopy() // keeps hw's resourceVersion: the write's precondition
	updated.Status.State, updated.Status.ObservedGeneration = v1alpha1.HardwareStateUnknown, hw.Generation
	machine, err := client.GetMachine(ctx, hw.Spec.MAC)
	switch {
	case err == nil:
		if s, ok := datacenterStates[machine.State]; ok {
			updated.Status.State = s
		}
		updated.Status.CurrentOS = machine.CurrentOS
	case !datacenter.IsNotFound(err):
		return 0, err
	}
	if apiequality.Semantic.DeepEqual(hw.Status, updated.Status) {
		return c.opts.Recheck, nil
	}
	if err := c.opts.Leading(ctx); err != nil {
		return 0, err
	}
	_, err = c.client.StargateV1alpha1().Hardwares(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		klog.FromContext(ctx).V(2).Info("Hardware changed during its lookup; looking it up again", "hardware", klog.KObj(hw))
		return conflictRequeue, nil
	case apierrors.IsNotFound(err):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return c.opts.Recheck, nil
}
