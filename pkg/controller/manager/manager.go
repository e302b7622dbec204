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
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/controller/datacenters"
	"stargate.io/stargate/pkg/controller/dcclients"
	hwcontroller "stargate.io/stargate/pkg/controller/hardware"
	"stargate.io/stargate/pkg/controller/jobs"
	"stargate.io/stargate/pkg/controller/leaderelection"
	"stargate.io/stargate/pkg/controller/metrics"
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

// Start runs the controllers until ctx is done: at once, or each time this
// replica wins the election. It returns once they are started.
func Start(ctx context.Context, cfg Config) error {
	client, err := clientset.NewForConfig(cfg.Loopback)
	if err != nil {
		return err
	}
	recorder, err := eventRecorder(ctx, cfg.CoreClientConfig)
	if err != nil {
		return err
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithName("controllers"))
	run := func(ctx context.Context, leading func(context.Context) error) {
		if err := runControllers(ctx, cfg, client, recorder, leading); err != nil {
			klog.FromContext(ctx).Error(err, "Controllers could not start")
		}
	}
	if !cfg.LeaderElect {
		go func() {
			metrics.Leader.Set(1)
			run(ctx, func(context.Context) error { return nil })
		}()
		return nil
	}
	go leaderelection.Run(ctx, leaderelection.Config{
		Client: cfg.EtcdClient, Key: path.Join(cfg.EtcdPrefix, "leaderelection", "stargate-controllers"),
		Identity: Identity(), TTL: cfg.LeaderElectionTTL,
	}, run)
	return nil
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

// runControllers runs every controller on fresh informers until ctx is done,
// and returns once all of them have stopped.
func runControllers(ctx context.Context, cfg Config, client clientset.Interface, recorder events.EventRecorder,
	leading func(context.Context) error) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithTransform(slimForControllers))
	defer factory.Shutdown()
	v1 := factory.Stargate().V1alpha1()
	// Only unfinished Jobs are cached; finished ones are read when collected.
	jobsFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithTransform(slimForControllers),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = jobs.UnfinishedJobs }))
	defer jobsFactory.Shutdown()
	unfinished := jobsFactory.Stargate().V1alpha1().Jobs()
	// One client per Datacenter, shared by the controllers.
	clientFor := dcclients.HTTPClients(cfg.DatacenterCredentialsDir)
	opts := cfg.JobOptions
	opts.Recorder = recorder
	opts.Leading = func(ctx context.Context, _ string) error { return leading(ctx) }
	jobController, err := jobs.New(client, unfinished, v1.Templates(), v1.Datacenters(), clientFor, opts)
	if err != nil {
		return err
	}
	probe, recheck := cfg.ProbeInterval, cfg.HardwareRecheck
	if probe <= 0 {
		probe = 10 * time.Second
	}
	if recheck <= 0 {
		recheck = hwcontroller.DefaultRecheck
	}
	prober, err := datacenters.New(client, v1.Datacenters(), unfinished, jobController.Running(), clientFor, probe, clock.RealClock{})
	if err != nil {
		return err
	}
	lookup, err := hwcontroller.New(client, v1.Datacenters(), clientFor, hwcontroller.Options{Recheck: recheck, Leading: opts.Leading})
	if err != nil {
		return err
	}
	// No Hardware informer: the controllers read Hardware when they need it.
	if cfg.CachesSynced != nil {
		cfg.CachesSynced([]cache.InformerSynced{unfinished.Informer().HasSynced,
			v1.Templates().Informer().HasSynced, v1.Datacenters().Informer().HasSynced})
		defer cfg.CachesSynced(nil)
	}
	factory.Start(ctx.Done())
	jobsFactory.Start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() { jobController.Run(ctx) })
	wg.Go(func() { prober.Run(ctx) })
	wg.Go(func() { lookup.Run(ctx) })
	wg.Wait()
	return nil
}

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
