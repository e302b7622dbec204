// Package campaigns drives Campaigns: it fixes their members when they
// start, creates their Jobs wave by wave within their limits, counts how
// each ended, and pauses, cancels and completes them.
//
// One replica drives each Campaign at a time (the same election as a
// datacenter's, under DriverKey), with one worker, so its members' progress
// lives in memory, rebuilt from the ledger (ledger.go) when a replica starts
// driving it. Its cost follows changes: a Job event touches one member; a
// sync counts the unavailable members from the Jobs in flight and the few
// Hardware in error, never from a list of every member.
package campaigns

import (
	"context"
	"maps"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions/stargate/v1alpha1"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// TroubledHardware is the field selector of the Hardware informer this
// controller needs: Hardware in state error or unknown, which count as
// unavailable. Few, unlike all Hardware.
const TroubledHardware = "status.state!=ready,status.state!=provisioning,status.state!=rebooting,status.state!=off,status.state!="

// driverKeyPrefix starts the driver key of a Campaign. Namespace names
// have no dots, so it never names a datacenter.
const driverKeyPrefix = "campaign."

// DriverKey is what replicas elect a Campaign's driver under.
func DriverKey(name string) string { return driverKeyPrefix + name }

// FromDriverKey returns the Campaign a driver key names.
func FromDriverKey(key string) (string, bool) { return strings.CutPrefix(key, driverKeyPrefix) }

// Options tune the controller.
type Options struct {
	// EtcdClient and EtcdPrefix: where the ledgers live.
	EtcdClient *clientv3.Client
	EtcdPrefix string
	// Leading is asked, with a Campaign's DriverKey, right before each
	// ledger write, Job create and Job cancel.
	Leading func(ctx context.Context, key string) error
	// Fence, with a Campaign's DriverKey, is the condition every ledger
	// write is made under (in its own etcd transaction): this replica still
	// holds the Campaign's election key. Nil: no condition (one replica).
	Fence func(key string) ([]clientv3.Cmp, error)
	// Want is told of every Campaign's DriverKey, so some replica drives it;
	// Forget, of a Campaign gone, so its driver stops.
	Want, Forget func(key string)
	// StatusInterval is the least time between two status writes of one
	// Campaign (default 1s): counts move with every Job, the status need not.
	StatusInterval time.Duration
	// RetryInterval is how soon a member whose Job could not be created yet
	// (its Hardware busy with another Job, the API unreachable) is tried
	// again (default 5s).
	RetryInterval time.Duration
	Clock         clock.Clock
}

// Controller drives Campaigns.
type Controller struct {
	client    clientset.Interface
	campaigns listers.CampaignLister
	jobs      listers.JobLister // unfinished Jobs of any origin
	troubled  listers.HardwareLister
	dcs       listers.DatacenterLister
	templates listers.TemplateLister
	ledger    *ledger
	opts      Options
	synced    []cache.InformerSynced

	mu     sync.Mutex
	driven map[string]*driven
	// ended are the Hardware (namespace/name) whose Job left the unfinished
	// cache lately, with when and the UID controlling that Job: see
	// endedGrace.
	ended       map[string]endedJob
	endedPruned time.Time
}

type endedJob struct {
	at    time.Time
	owner types.UID
}

// endedGrace is how long a Hardware whose Job just finished counts as
// unavailable to the other Campaigns: the Job's last write is seen before
// the write that turns its Hardware to error (the server makes it right
// after, and it comes through the troubled-Hardware watch, not the Job
// one). A Campaign's own members are held by its failedRecently instead.
const endedGrace = 5 * time.Second

// driven is a Campaign this replica drives now.
type driven struct {
	queue *controller.Queue

	mu sync.Mutex
	// changed are the members (datacenter/hardware) whose Job changed
	// since the last sync.
	changed sets.Set[string]

	// Touched only by the Campaign's one worker:
	progress *progress
	// recreate are started members whose Job was not found: created again.
	recreate []*member
	// seen is, per member (datacenter/hardware), the UID of the last Job
	// of this Campaign the unfinished cache showed for it (under mu): a
	// member counted from another Job (or from none) has a stray.
	seen map[string]types.UID
	// strays are final members a Job was created for after they were
	// recorded (see stopStrays).
	strays sets.Set[string]
	// endedSwept: the Jobs of the Campaign, ended, were looked through once.
	endedSwept bool
	// unreleased are counted Jobs whose campaign finalizer a release failed
	// to remove: released again on the next sync.
	unreleased map[string]*v1alpha1.Job
	// failedRecently is the progress's, kept across a reload.
	failedRecently map[string]time.Time
	// retry: a create is to be tried again soon.
	retry      bool
	wave       int32
	waveStart  time.Time
	waveFinish time.Time
	lastStatus time.Time
}

// New returns the controller over the given informers. unfinishedJobs must
// hold every unfinished Job (of any origin); troubled the Hardware selected
// by TroubledHardware.
func New(client clientset.Interface, campaignInformer informers.CampaignInformer, unfinishedJobs informers.JobInformer,
	troubled informers.HardwareInformer, dcInformer informers.DatacenterInformer, tmplInformer informers.TemplateInformer,
	opts Options) (*Controller, error) {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 5 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Leading == nil {
		opts.Leading = func(context.Context, string) error { return nil }
	}
	c := &Controller{
		client: client, campaigns: campaignInformer.Lister(), jobs: unfinishedJobs.Lister(), troubled: troubled.Lister(),
		dcs: dcInformer.Lister(), templates: tmplInformer.Lister(), ledger: newLedger(opts.EtcdClient, opts.EtcdPrefix, opts.Fence),
		opts: opts, driven: map[string]*driven{}, ended: map[string]endedJob{},
		synced: []cache.InformerSynced{campaignInformer.Informer().HasSynced, unfinishedJobs.Informer().HasSynced,
			troubled.Informer().HasSynced, dcInformer.Informer().HasSynced, tmplInformer.Informer().HasSynced},
	}
	onCampaign := func(obj interface{}) {
		if name, ok := objectName(obj); ok {
			if opts.Want != nil {
				opts.Want(DriverKey(name))
			}
			c.enqueue(name)
		}
	}
	gone := func(obj interface{}) {
		if name, ok := objectName(obj); ok && opts.Forget != nil {
			opts.Forget(DriverKey(name))
		}
	}
	if _, err := campaignInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onCampaign, UpdateFunc: func(_, obj interface{}) { onCampaign(obj) }, DeleteFunc: gone,
	}); err != nil {
		return nil, err
	}
	if _, err := unfinishedJobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.onJob(obj, false) },
		UpdateFunc: func(_, obj interface{}) { c.onJob(obj, false) },
		DeleteFunc: func(obj interface{}) { c.onJob(obj, true) },
	}); err != nil {
		return nil, err
	}
	// A member leaving error, a Datacenter resumed or relabelled, a Template
	// created: any of them may let a Campaign go on.
	everything := cache.ResourceEventHandlerFuncs{
		AddFunc: func(interface{}) { c.enqueueAll() }, UpdateFunc: func(_, _ interface{}) { c.enqueueAll() },
		DeleteFunc: func(interface{}) { c.enqueueAll() },
	}
	for _, informer := range []cache.SharedIndexInformer{troubled.Informer(), tmplInformer.Informer()} {
		if _, err := informer.AddEventHandler(everything); err != nil {
			return nil, err
		}
	}
	// A Datacenter matters through its spec (paused, maxConcurrentJobs) and
	// labels (selectors, windows), not its status, which probes rewrite.
	if _, err := dcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: everything.AddFunc, DeleteFunc: everything.DeleteFunc,
		UpdateFunc: func(old, obj interface{}) {
			o, n := old.(*v1alpha1.Datacenter), obj.(*v1alpha1.Datacenter)
			if o.Generation != n.Generation || !maps.Equal(o.Labels, n.Labels) {
				c.enqueueAll()
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// HasSynced lists the caches the controller needs.
func (c *Controller) HasSynced() []cache.InformerSynced { return c.synced }

func objectName(obj interface{}) (string, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if camp, ok := obj.(*v1alpha1.Campaign); ok {
		return camp.Name, true
	}
	return "", false
}

// onJob notes a Campaign's Job changing (finished: it left the unfinished
// cache), and wakes every Campaign when any Job finishes (its own
// Campaign's included), since a member busy with another Job may now start.
func (c *Controller) onJob(obj interface{}, gone bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	job, ok := obj.(*v1alpha1.Job)
	if !ok {
		return
	}
	if name := job.Labels[v1alpha1.CampaignLabel]; name != "" {
		c.mu.Lock()
		d := c.driven[name]
		c.mu.Unlock()
		if d != nil {
			key := job.Namespace + "/" + job.Spec.HardwareRef.Name
			d.mu.Lock()
			d.changed.Insert(key)
			if !finished(job) { // every event of the unfinished cache, its last (a delete) included
				d.seen[key] = job.UID
			}
			d.mu.Unlock()
			d.queue.Add(name)
		}
	}
	if gone {
		var owner types.UID
		if ref := metav1.GetControllerOf(job); ref != nil {
			owner = ref.UID
		}
		now := c.opts.Clock.Now()
		c.mu.Lock()
		// Kept on every replica (a replica that takes a Campaign over
		// needs the last few seconds too); pruned below.
		c.ended[job.Namespace+"/"+job.Spec.HardwareRef.Name] = endedJob{at: now, owner: owner}
		if now.After(c.endedPruned.Add(endedGrace)) { // the map holds two graces' worth at most
			maps.DeleteFunc(c.ended, func(_ string, e endedJob) bool { return now.Sub(e.at) > endedGrace })
			c.endedPruned = now
		}
		c.mu.Unlock()
		c.enqueueAll() // another Campaign's member may be free now, too
	}
}

// recentlyEnded calls f with each Hardware whose Job, not controlled by
// uid, finished within endedGrace, and returns how long until the first of
// those it called f with is past its grace (0: none).
func (c *Controller) recentlyEnded(uid types.UID, f func(key string) bool) time.Duration {
	now := c.opts.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Duration
	for key, e := range c.ended {
		if left := endedGrace - now.Sub(e.at); e.owner != uid && left >= 0 && f(key) {
			first = minPositive(first, left+time.Millisecond)
		}
	}
	return first
}

func (c *Controller) enqueue(name string) {
	c.mu.Lock()
	d := c.driven[name]
	c.mu.Unlock()
	if d != nil {
		d.queue.Add(name)
	}
}

func (c *Controller) enqueueAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, d := range c.driven {
		d.queue.Add(name)
	}
}

// Run waits for the caches and returns when ctx ends; Campaigns are driven
// under Drive.
func (c *Controller) Run(ctx context.Context) {
	if !cache.WaitForNamedCacheSync("campaigns", ctx.Done(), c.synced...) {
		return
	}
	<-ctx.Done()
}

// newDriven returns the state of a Campaign this replica starts driving,
// with its queue named queueName.
func (c *Controller) newDriven(queueName string) *driven {
	return &driven{queue: controller.NewQueue(queueName, c.sync), changed: sets.New[string](), strays: sets.New[string](), seen: map[string]types.UID{},
		unreleased: map[string]*v1alpha1.Job{}, failedRecently: map[string]time.Time{}}
}

// Drive drives Campaign name until ctx ends (this replica no longer holds
// its election), with one worker, and returns once that worker stopped.
func (c *Controller) Drive(ctx context.Context, name string) {
	d := c.newDriven("campaign-" + name)
	c.mu.Lock()
	c.driven[name] = d
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.driven[name] == d {
			delete(c.driven, name)
		}
		c.mu.Unlock()
	}()
	klog.FromContext(ctx).Info("Driving a campaign", "campaign", name)
	d.queue.Add(name)
	d.queue.Run(ctx, 1, c.synced...)
}

func (c *Controller) drivenCampaign(name string) *driven {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.driven[name]
}

// sync moves Campaign name a step: it starts it, counts the Jobs that
// finished, applies its budgets, advances its waves, starts what its limits
// allow, and writes its status.
func (c *Controller) sync(ctx context.Context, name string) (time.Duration, error) {
	d := c.drivenCampaign(name)
	if d == nil {
		return 0, nil
	}
	camp, err := c.campaigns.Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if camp.DeletionTimestamp != nil {
		return 0, c.finalize(ctx, camp, d)
	}
	if ended(camp.Status.Phase) {
		if err := c.stopLateStrays(ctx, camp, d); err != nil {
			return 0, err
		}
		after, err := c.expire(ctx, camp)
		if d.retry { // a stray to look at again
			d.retry, after = false, minPositive(after, c.opts.RetryInterval)
		}
		return after, err
	}
	if camp.Status.StartTime == nil {
		return c.start(ctx, camp, d)
	}
	if d.progress == nil {
		if err := c.load(ctx, camp, d); err != nil {
			return 0, err
		}
	}
	if err := c.observe(ctx, camp, d); err != nil {
		return 0, err
	}
	step := c.decide(camp, d)
	if err := c.act(ctx, camp, d, step); err != nil {
		return 0, err
	}
	after, err := c.writeStatus(ctx, camp, d, step)
	if err != nil {
		return 0, err
	}
	return minPositive(after, step.requeue), nil
}

func ended(phase v1alpha1.CampaignPhase) bool {
	return phase == v1alpha1.CampaignComplete || phase == v1alpha1.CampaignFailed || phase == v1alpha1.CampaignCancelled
}

func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// statusEqual compares two statuses. Condition transition times do not make
// them differ: meta.SetStatusCondition keeps a condition's time when its
// status holds.
func statusEqual(a, b *v1alpha1.CampaignStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}
