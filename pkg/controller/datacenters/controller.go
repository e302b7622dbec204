// Package datacenters keeps each Datacenter's status current: whether its API
// answers (the Ready condition), how many Jobs run there, and when it was
// last probed.
package datacenters

import (
	"context"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	"stargate.io/stargate/pkg/controller/dcclients"
	"stargate.io/stargate/pkg/controller/metrics"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions/stargate/v1alpha1"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// ReadyCondition is True while the datacenter API answers its health check.
const ReadyCondition = "Ready"

// Controller probes Datacenters.
type Controller struct {
	client    clientset.Interface
	dcs       listers.DatacenterLister
	running   *controller.RunningJobs
	synced    []cache.InformerSynced
	queue     *controller.Queue
	clientFor dcclients.ClientFor
	interval  time.Duration
	clock     clock.Clock
}

// New returns a controller that probes every Datacenter each interval and
// reports the Jobs running there as running counts them.
func New(client clientset.Interface, dcInformer informers.DatacenterInformer, jobInformer informers.JobInformer,
	running *controller.RunningJobs, clientFor dcclients.ClientFor, interval time.Duration, clk clock.Clock) (*Controller, error) {
	c := &Controller{client: client, dcs: dcInformer.Lister(), running: running, clientFor: clientFor,
		interval: interval, clock: clk,
		synced: []cache.InformerSynced{dcInformer.Informer().HasSynced, jobInformer.Informer().HasSynced}}
	c.queue = controller.NewQueue("stargate-datacenters", c.sync)
	// New Datacenters and endpoint changes are probed at once; the rest on the interval.
	_, err := dcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.queue.Enqueue,
		UpdateFunc: func(old, obj interface{}) {
			if old.(*v1alpha1.Datacenter).Spec.Endpoint != obj.(*v1alpha1.Datacenter).Spec.Endpoint {
				c.queue.Enqueue(obj)
			}
		},
	})
	return c, err
}

// Run probes until ctx is done.
func (c *Controller) Run(ctx context.Context) { c.queue.Run(ctx, 2, c.synced...) }

func (c *Controller) sync(ctx context.Context, name string) (time.Duration, error) {
	cached, err := c.dcs.Get(name)
	if apierrors.IsNotFound(err) {
		metrics.DatacenterUp.DeleteLabelValues(name)
		metrics.JobsActive.DeleteLabelValues(name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	dc := cached.DeepCopy()
	client, err := c.clientFor(dc)
	ready := metav1.Condition{Type: ReadyCondition, Status: metav1.ConditionTrue, Reason: "Reachable",
		Message: "the datacenter API answered its health check", ObservedGeneration: dc.Generation}
	if err == nil {
		probeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = client.Health(probeCtx)
		cancel()
	}
	up := 1.0
	if err != nil {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Unreachable", err.Error()
		up = 0
	}
	metrics.DatacenterUp.WithLabelValues(name).Set(up)
	before := dc.Status.DeepCopy()
	meta.SetStatusCondition(&dc.Status.Conditions, ready)
	dc.Status.ActiveJobs = int32(c.running.Count(name))
	metrics.JobsActive.WithLabelValues(name).Set(float64(dc.Status.ActiveJobs))
	now := metav1.NewTime(c.clock.Now())
	dc.Status.LastProbeTime = &now
	if !apiequality.Semantic.DeepEqual(before, &dc.Status) {
		if _, err := c.client.StargateV1alpha1().Datacenters().UpdateStatus(ctx, dc, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	return c.interval, nil
}
