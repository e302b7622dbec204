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
	"k8s.io/client-go/util/retry"

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
	recheck   time.Duration
}

// New returns a controller that looks every idle Hardware up each recheck interval.
func New(client clientset.Interface, hwInformer informers.HardwareInformer, dcInformer informers.DatacenterInformer,
	clientFor dcclients.ClientFor, recheck time.Duration) (*Controller, error) {
	c := &Controller{client: client, hardware: hwInformer.Lister(), dcs: dcInformer.Lister(), clientFor: clientFor,
		recheck: recheck, synced: []cache.InformerSynced{hwInformer.Informer().HasSynced, dcInformer.Informer().HasSynced}}
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
		return c.recheck, nil // the Job controller owns its status meanwhile
	}
	dc, err := c.dcs.Get(ns)
	if err != nil {
		return c.recheck, nil // no Datacenter yet: nothing to ask
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return 0, err
	}
	state, currentOS := v1alpha1.HardwareStateUnknown, hw.Status.CurrentOS
	machine, err := client.GetMachine(ctx, hw.Spec.MAC)
	switch {
	case err == nil:
		if s, ok := datacenterStates[machine.State]; ok {
			state = s
		}
		currentOS = machine.CurrentOS
	case !datacenter.IsNotFound(err):
		return 0, err
	}
	return c.recheck, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := c.client.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || live.Status.ActiveJob != "" {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		updated := live.DeepCopy()
		updated.Status.State, updated.Status.CurrentOS, updated.Status.ObservedGeneration = state, currentOS, live.Generation
		if apiequality.Semantic.DeepEqual(live.Status, updated.Status) {
			return nil
		}
		_, err = c.client.StargateV1alpha1().Hardwares(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		return err
	})
}
