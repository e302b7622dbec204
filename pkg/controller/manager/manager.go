// Package manager runs Stargate's controllers inside the API server process:
// the informers they share, the Events they record, the election of the
// replica that runs them, and their readiness. pkg/apiserver wires the API
// and starts this from a post-start hook.
package manager

import (
	"context"
	"fmt"
	"os"
	"path"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller/campaigns"
	"stargate.io/stargate/pkg/controller/datacenters"
	"stargate.io/stargate/pkg/controller/dcclients"
	hwcontroller "stargate.io/stargate/pkg/controller/hardware"
	"stargate.io/stargate/pkg/controller/jobs"
	"stargate.io/stargate/pkg/controller/sharding"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	clientsetscheme "stargate.io/stargate/pkg/generated/clientset/versioned/scheme"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

// Config is what the controllers need from the server.
type Config struct {
	// Loopback reaches this server's own API.
	Loopback *restclient.Config
	// EtcdClient and EtcdPrefix: where replicas elect who drives what.
	EtcdClient *clientv3.Client
	EtcdPrefix string
	// DatacenterCredentialsDir holds one bearer-token file per Datacenter.
	DatacenterCredentialsDir string
	// JobOptions tune the Job controller (intervals, clock); zero values are defaults.
	JobOptions jobs.Options
	// ProbeInterval is how often each Datacenter is probed (default 10s);
	// HardwareRecheck how often idle Hardware is looked up again (default 5m).
	ProbeInterval, HardwareRecheck time.Duration
	// LeaderElect makes replicas on one etcd share the work; LeaderElectionTTL
	// is how long a silent replica keeps what it drives.
	LeaderElect       bool
	LeaderElectionTTL time.Duration
	// CoreClientConfig reaches the hosting cluster's core API (aggregated
	// mode), where the controllers record Events; nil in standalone mode.
	CoreClientConfig *restclient.Config
	// CachesSynced is told the controllers' caches while this replica runs
	// them (nil when it stops), for the server's readiness check.
	CachesSynced func([]cache.InformerSynced)
}

// Start runs the controllers until ctx is done. Alone (LeaderElect off) this
// replica drives every datacenter; with LeaderElect, the replicas on one
// etcd share the datacenters, each driven by one replica at a time
// (package sharding). It returns once they are started.
func Start(ctx context.Context, cfg Config) error {
	client, err := clientset.NewForConfig(cfg.Loopback)
	if err != nil {
		return err
	}
	recorder, err := eventRecorder(ctx, cfg.CoreClientConfig)
	if err != nil {
		return err
	}
	sharding.RegisterMetrics()
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithName("controllers"))
	go func() {
		if err := runControllers(ctx, cfg, client, recorder, Identity()); err != nil {
			klog.FromContext(ctx).Error(err, "Controllers could not start")
		}
	}()
	return nil
}

// driver decides which datacenters this replica drives.
type driver interface {
	Run(ctx context.Context, acquire sharding.Acquire)
	Want(datacenter string)
	Forget(datacenter string)
	Owns(datacenter string) bool
	Leading(ctx context.Context, datacenter string) error
	Fence(datacenter string) ([]clientv3.Cmp, error)
}

// eventRecorder records Events through the hosting cluster's events API when
// there is one, and logs them (at V(3)) always.
func eventRecorder(ctx context.Context, core *restclient.Config) (events.EventRecorder, error) {
	var sink events.EventSink
	if core != nil {
		kube, err := kubernetes.NewForConfig(core)
		if err != nil {
			return nil, err
		}
		sink = &events.EventSinkImpl{Interface: kube.EventsV1()}
	}
	broadcaster := events.NewBroadcaster(sink)
	if sink != nil {
		if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
			return nil, err
		}
	}
	broadcaster.StartStructuredLogging(3)
	go func() {
		<-ctx.Done()
		broadcaster.Shutdown()
	}()
	return broadcaster.NewRecorder(clientsetscheme.Scheme, "stargate.io/job-controller"), nil
}

// runControllers runs every controller on fresh informers until ctx is
// done, and returns once all of them have stopped.
func runControllers(ctx context.Context, cfg Config, client clientset.Interface, recorder events.EventRecorder, identity string) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithTransform(slimForControllers))
	defer factory.Shutdown()
	v1 := factory.Stargate().V1alpha1()
	// Only unfinished Jobs are cached; finished ones are read when collected.
	jobsFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithTransform(slimForControllers),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = jobs.UnfinishedJobs }))
	defer jobsFactory.Shutdown()
	unfinished := jobsFactory.Stargate().V1alpha1().Jobs()
	// No informer of every Hardware: the controllers read Hardware when they
	// need it. Campaigns watch the few in error or unknown state.
	troubledFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithTransform(slimForControllers),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = campaigns.TroubledHardware }))
	defer troubledFactory.Shutdown()
	troubled := troubledFactory.Stargate().V1alpha1().Hardwares()
	synced := []cache.InformerSynced{unfinished.Informer().HasSynced,
		v1.Templates().Informer().HasSynced, v1.Datacenters().Informer().HasSynced,
		v1.Campaigns().Informer().HasSynced, troubled.Informer().HasSynced}
	var d driver = newEveryDatacenter(synced)
	if cfg.LeaderElect {
		sharder, err := sharding.New(sharding.Config{
			Client: cfg.EtcdClient, Prefix: path.Join(cfg.EtcdPrefix, "controllers"), Identity: identity, TTL: cfg.LeaderElectionTTL,
			// A replica takes datacenters over only with its caches filled.
			Ready: func(ctx context.Context) bool { return cache.WaitForCacheSync(ctx.Done(), synced...) },
		})
		if err != nil {
			return err
		}
		d = sharder
	}

	// One client per Datacenter, shared by the controllers.
	clientFor := dcclients.HTTPClients(cfg.DatacenterCredentialsDir)
	opts := cfg.JobOptions
	opts.Recorder, opts.Leading, opts.Owns, opts.Want = recorder, d.Leading, d.Owns, d.Want
	jobController, err := jobs.New(client, unfinished, v1.Templates(), v1.Datacenters(), clientFor, opts)
	if err != nil {
		return err
	}
	prober, err := datacenters.New(client, v1.Datacenters(), unfinished, jobController.Running(), clientFor,
		datacenters.Options{Interval: cfg.ProbeInterval, Owns: d.Owns, Leading: d.Leading, Identity: identity})
	if err != nil {
		return err
	}
	lookup, err := hwcontroller.New(client, v1.Datacenters(), clientFor,
		hwcontroller.Options{Recheck: cfg.HardwareRecheck, Leading: d.Leading, Owns: d.Owns})
	if err != nil {
		return err
	}
	campaignController, err := campaigns.New(client, v1.Campaigns(), unfinished, troubled, v1.Datacenters(), v1.Templates(),
		campaigns.Options{EtcdClient: cfg.EtcdClient, EtcdPrefix: cfg.EtcdPrefix, Leading: d.Leading, Fence: d.Fence, Want: d.Want, Forget: d.Forget})
	if err != nil {
		return err
	}
	// Every namespace with a Datacenter or an unfinished Job is driven by
	// some replica.
	want := func(obj interface{}) {
		if m, ok := obj.(metav1.Object); ok {
			if _, isDC := obj.(*v1alpha1.Datacenter); isDC {
				d.Want(m.GetName())
			} else {
				d.Want(m.GetNamespace())
			}
		}
	}
	for _, informer := range []cache.SharedIndexInformer{v1.Datacenters().Informer(), unfinished.Informer()} {
		if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: want}); err != nil {
			return err
		}
	}
	if cfg.CachesSynced != nil {
		cfg.CachesSynced(synced)
		defer cfg.CachesSynced(nil)
	}
	factory.Start(ctx.Done())
	jobsFactory.Start(ctx.Done())
	troubledFactory.Start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() { campaignController.Run(ctx) })
	wg.Go(func() { jobController.Run(ctx) })
	wg.Go(func() { prober.Run(ctx) })
	wg.Go(func() { lookup.Run(ctx) })
	wg.Go(func() {
		if cfg.LeaderElect && !olderReplicasGone(ctx, cfg.EtcdClient, cfg.EtcdPrefix) {
			return
		}
		d.Run(ctx, func(ctx context.Context, datacenter string) {
			// Campaigns are elected like datacenters, under their own keys.
			if name, ok := campaigns.FromDriverKey(datacenter); ok {
				campaignController.Drive(ctx, name)
				return
			}
			klog.FromContext(ctx).Info("Driving a datacenter", "datacenter", datacenter, "replica", identity)
			prober.Enqueue(datacenter)
			var pending sync.WaitGroup
			pending.Go(func() { lookup.LookUpPending(ctx, datacenter) })
			jobController.Drive(ctx, datacenter)
			pending.Wait()
			klog.FromContext(ctx).Info("Stopped driving a datacenter", "datacenter", datacenter, "replica", identity)
		})
	})
	wg.Wait()
	return nil
}

// olderReplicasGone waits, during an upgrade, until no replica of an older
// version holds the election in which one replica ran every controller
// (they know nothing of datacenters spread over replicas): until then this
// replica drives nothing. False when ctx ended first.
func olderReplicasGone(ctx context.Context, client *clientv3.Client, prefix string) bool {
	legacy := path.Join(prefix, "leaderelection", "stargate-controllers") + "/"
	for logged := false; ; {
		resp, err := client.Get(ctx, legacy, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 0 {
			return true
		}
		if !logged {
			klog.FromContext(ctx).Info("Waiting for replicas of an older version, which run every controller themselves, to stop before driving datacenters", "election", legacy, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Second):
		}
	}
}

// everyDatacenter drives every datacenter it is told of: one replica alone.
type everyDatacenter struct {
	synced []cache.InformerSynced

	mu      sync.Mutex
	wanted  map[string]bool
	cancels map[string]context.CancelFunc // of each datacenter driven
	done    map[string]chan struct{}      // closed when its latest driver returned
	ctx     context.Context               // set once Run has the caches filled
	acquire sharding.Acquire
	stopped bool
	wg      sync.WaitGroup
}

func newEveryDatacenter(synced []cache.InformerSynced) *everyDatacenter {
	return &everyDatacenter{synced: synced, wanted: map[string]bool{}, cancels: map[string]context.CancelFunc{}, done: map[string]chan struct{}{}}
}

func (e *everyDatacenter) Run(ctx context.Context, acquire sharding.Acquire) {
	if !cache.WaitForCacheSync(ctx.Done(), e.synced...) {
		return
	}
	e.mu.Lock()
	e.ctx, e.acquire = ctx, acquire
	for datacenter := range e.wanted {
		e.drive(datacenter)
	}
	e.mu.Unlock()
	<-ctx.Done()
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *everyDatacenter) Want(datacenter string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.wanted[datacenter] {
		return
	}
	e.wanted[datacenter] = true
	if e.ctx != nil {
		e.drive(datacenter)
	}
}

// drive runs acquire for datacenter until the end; e.mu is held.
func (e *everyDatacenter) drive(datacenter string) {
	if e.stopped {
		return // Run is waiting for the others already
	}
	ctx, cancel := context.WithCancel(e.ctx)
	e.cancels[datacenter] = cancel
	// A key forgotten and wanted again starts only once its last driver
	// returned: one driver per key at a time, as with the sharder.
	previous, done := e.done[datacenter], make(chan struct{})
	e.done[datacenter] = done
	e.wg.Go(func() {
		defer close(done)
		defer cancel()
		if previous != nil {
			select {
			case <-previous:
			case <-ctx.Done():
				return
			}
		}
		sharding.DatacenterDriven.WithLabelValues(datacenter).Set(1)
		defer sharding.DatacenterDriven.DeleteLabelValues(datacenter)
		e.acquire(ctx, datacenter)
	})
}

// Forget stops driving datacenter (a Campaign deleted): Want starts it again.
func (e *everyDatacenter) Forget(datacenter string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.wanted, datacenter)
	if cancel, ok := e.cancels[datacenter]; ok {
		cancel()
		delete(e.cancels, datacenter)
	}
}

func (e *everyDatacenter) Owns(string) bool { return true }

func (e *everyDatacenter) Leading(context.Context, string) error { return nil }

// Fence is no condition: one replica alone drives everything.
func (e *everyDatacenter) Fence(string) ([]clientv3.Cmp, error) { return nil, nil }

// slimForControllers drops, before an object enters the controllers' caches
// (unfinished Jobs, Templates, Datacenters; none holds Hardware), what no controller
// reads: managed fields and annotations.
func slimForControllers(obj interface{}) (interface{}, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	return obj, nil
}

// Identity names this replica in elections: host and process.
func Identity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s_%d_%s", host, os.Getpid(), utilrand.String(5))
}
