// Package datacenters keeps each Datacenter's status current: whether its API
// answers and takes Stargate's credentials (the Ready condition), how many
// Jobs run there, and when it was last probed. A probe that changes nothing
// but the probe time writes nothing, up to lastProbeRefresh.
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
	"stargate.io/stargate/pkg/datacenter"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions/stargate/v1alpha1"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// ReadyCondition is True while the datacenter API answers its health check
// and accepts Stargate's credentials.
const ReadyCondition = "Ready"

// Reasons of the Ready condition.
const (
	// ReasonReachable: the API answered its health check and took the credentials.
	ReasonReachable = "Reachable"
	// ReasonUnreachable: the health check failed; the message says how.
	ReasonUnreachable = "Unreachable"
	// ReasonCredentialsMissing: the credentials file is missing, unreadable
	// or empty; the message names it.
	ReasonCredentialsMissing = "CredentialsMissing"
	// ReasonCredentialsRejected: the datacenter answered 401 or 403 to the
	// token; the message names the file it came from.
	ReasonCredentialsRejected = "CredentialsRejected"
)

// lastProbeRefresh is how old status.lastProbeTime may grow before a probe
// that changed nothing else writes it anyway. A probe writes the Datacenter's
// status only when the Ready condition or activeJobs changed, or
// lastProbeTime is this old: rewriting it every probe interval would wake
// every watcher of the Datacenter (the Job controller among them) for nothing.
const lastProbeRefresh = 5 * time.Minute

// credentialsCheckKey is the idempotency key a probe looks up to learn whether
// the datacenter takes the token (/healthz needs none). No Job uses it (Jobs
// use their UIDs), so the lookup finds nothing and starts nothing.
const credentialsCheckKey = "stargate-credentials-check"

// Controller probes Datacenters.
type Controller struct {
	client    clientset.Interface
	dcs       listers.DatacenterLister
	running   *controller.RunningJobs
	synced    []cache.InformerSynced
	queue     *controller.Queue
	clientFor dcclients.ClientFor
	opts      Options
}

// Options tune the prober.
type Options struct {
	// Interval between probes of a Datacenter (default 10s).
	Interval time.Duration
	// Clock (default: the real one).
	Clock clock.Clock
	// Owns, when set, says whether this replica drives a datacenter now:
	// only those are probed here (call Enqueue when one is taken over).
	// Nil: every datacenter.
	Owns func(datacenter string) bool
	// Leading, when set, is asked right before each status write.
	Leading func(ctx context.Context, datacenter string) error
	// Identity names this replica in status.drivenBy.
	Identity string
}

// New returns a controller that probes every Datacenter each interval and
// reports the Jobs running there as running counts them.
func New(client clientset.Interface, dcInformer informers.DatacenterInformer, jobInformer informers.JobInformer,
	running *controller.RunningJobs, clientFor dcclients.ClientFor, opts Options) (*Controller, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Owns == nil {
		opts.Owns = func(string) bool { return true }
	}
	if opts.Leading == nil {
		opts.Leading = func(context.Context, string) error { return nil }
	}
	c := &Controller{client: client, dcs: dcInformer.Lister(), running: running, clientFor: clientFor, opts: opts,
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

// Enqueue probes a datacenter now (one this replica has just taken over).
func (c *Controller) Enqueue(datacenter string) { c.queue.Add(datacenter) }

func (c *Controller) sync(ctx context.Context, name string) (time.Duration, error) {
	if !c.opts.Owns(name) {
		return 0, nil // its driver probes it; Enqueue when it comes back here
	}
	cached, err := c.dcs.Get(name)
	if apierrors.IsNotFound(err) {
		metrics.DatacenterUp.DeleteLabelValues(name)
		metrics.JobsActive.DeleteLabelValues(name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now := c.opts.Clock.Now()
	ready, up := c.probe(ctx, cached, now)
	metrics.DatacenterUp.WithLabelValues(name).Set(up)
	dc := cached.DeepCopy()
	meta.SetStatusCondition(&dc.Status.Conditions, ready)
	dc.Status.ActiveJobs = int32(c.running.Count(name))
	dc.Status.DrivenBy = c.opts.Identity
	metrics.JobsActive.WithLabelValues(name).Set(float64(dc.Status.ActiveJobs))
	changed := !apiequality.Semantic.DeepEqual(cached.Status, dc.Status)
	stale := dc.Status.LastProbeTime == nil || now.Sub(dc.Status.LastProbeTime.Time) >= lastProbeRefresh
	if changed || stale {
		dc.Status.LastProbeTime = &metav1.Time{Time: now}
		if err := c.opts.Leading(ctx, name); err != nil {
			return 0, nil // no longer this replica's to write; its new driver probes it
		}
		if _, err := c.client.StargateV1alpha1().Datacenters().UpdateStatus(ctx, dc, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	return c.opts.Interval, nil
}

// probe asks the datacenter's health check, then whether it takes the
// credentials, and returns the Ready condition and the value of
// stargate_datacenter_up (1 when the health check answered).
func (c *Controller) probe(ctx context.Context, dc *v1alpha1.Datacenter, now time.Time) (metav1.Condition, float64) {
	ready := metav1.Condition{Type: ReadyCondition, Status: metav1.ConditionFalse, ObservedGeneration: dc.Generation,
		LastTransitionTime: metav1.Time{Time: now}}
	client, err := c.clientFor(dc)
	if err != nil {
		ready.Reason, ready.Message = ReasonUnreachable, err.Error()
		return ready, 0
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	up := 0.0
	err = client.Health(ctx)
	if err == nil {
		up = 1
		_, err = client.FindJob(ctx, credentialsCheckKey)
		if _, refused := datacenter.IsCredentials(err); !refused {
			err = nil // any other answer took the token; the health check decides the rest
		}
	}
	ce, credentials := datacenter.IsCredentials(err)
	switch {
	case err == nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, ReasonReachable,
			"the datacenter API answered its health check and accepted Stargate's credentials"
	case credentials && ce.Missing:
		ready.Reason, ready.Message = ReasonCredentialsMissing, err.Error()
	case credentials:
		ready.Reason, ready.Message = ReasonCredentialsRejected, err.Error()
	default:
		ready.Reason, ready.Message = ReasonUnreachable, err.Error()
	}
	return ready, up
}
