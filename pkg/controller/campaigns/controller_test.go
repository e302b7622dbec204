package campaigns

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	"stargate.io/stargate/pkg/embeddedetcd"
	"stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

type rig struct {
	t       *testing.T
	c       *Controller
	client  *fake.Clientset
	f       informers.SharedInformerFactory
	d       *driven
	failLdr atomic.Int32 // fail the next N Leading calls
	name    string
}

func newRig(t *testing.T, spec v1alpha1.CampaignSpec, hws ...string) *rig {
	etcd, err := embeddedetcd.Start(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ec.Close() })
	v1alpha1.SetDefaults_CampaignSpec(&spec)
	objs := []runtime.Object{
		&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-a"}},
		&v1alpha1.Campaign{ObjectMeta: metav1.ObjectMeta{Name: "camp", UID: "uid-1", Generation: 1}, Spec: spec},
	}
	for _, h := range hws {
		objs = append(objs, &v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Name: h, Namespace: "dc-a"}})
	}
	client := fake.NewSimpleClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	v := f.Stargate().V1alpha1()
	r := &rig{t: t, client: client, f: f, name: "camp"}
	c, err := New(client, v.Campaigns(), v.Jobs(), v.Hardwares(), v.Datacenters(), v.Templates(), Options{
		EtcdClient: ec, EtcdPrefix: "/t", RetryInterval: time.Millisecond, StatusInterval: time.Nanosecond,
		Leading: func(context.Context, string) error {
			if r.failLdr.Load() > 0 {
				r.failLdr.Add(-1)
				return fmt.Errorf("etcd: context deadline exceeded (transient)")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	v.Datacenters().Informer().GetIndexer().Add(objs[0])
	r.d = &driven{queue: controller.NewQueue("x", c.sync), changed: sets.New[string]()}
	c.driven["camp"] = r.d
	r.refresh()
	return r
}

// refresh plays the Campaign informer: the cache takes the stored Campaign.
func (r *rig) refresh() *v1alpha1.Campaign {
	camp, err := r.client.StargateV1alpha1().Campaigns().Get(context.TODO(), r.name, metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	r.f.Stargate().V1alpha1().Campaigns().Informer().GetIndexer().Update(camp)
	return camp
}

func (r *rig) sync() error {
	_, err := r.c.sync(context.TODO(), r.name)
	r.refresh()
	return err
}

func (r *rig) jobs() []v1alpha1.Job {
	l, _ := r.client.StargateV1alpha1().Jobs("dc-a").List(context.TODO(), metav1.ListOptions{})
	return l.Items
}

func (r *rig) refuseCreates(err error) *atomic.Bool {
	on := &atomic.Bool{}
	on.Store(true)
	r.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if on.Load() {
			return true, nil, err
		}
		return false, nil, nil
	})
	return on
}

var busy = apierrors.NewConflict(schema.GroupResource{Group: "stargate.io", Resource: "hardwares"}, "hw-1",
	fmt.Errorf("Job x is still running on it"))

// A member whose create met a busy Hardware (409) does not get its Job
// while the Campaign is paused.
func TestRetriedMemberWaitsWhilePaused(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot}, "hw-1")
	on := r.refuseCreates(busy)
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.jobs()); n != 0 {
		t.Fatalf("jobs %d", n)
	}
	camp := r.refresh()
	camp.Spec.Paused = true
	r.client.StargateV1alpha1().Campaigns().Update(context.TODO(), camp, metav1.UpdateOptions{})
	r.refresh()
	on.Store(false) // the other Job finished
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	camp = r.refresh()
	t.Logf("phase %s, paused cond %v", camp.Status.Phase, camp.Status.Conditions)
	if n := len(r.jobs()); n != 0 {
		t.Errorf("spec.paused=true, yet %d Job(s) created: %s", n, r.jobs()[0].Name)
	}
}

// A transient Leading error at createJobs, after the ledger recorded the
// member started, does not strand it: its Job is created on a later sync.
func TestCreateIsRetriedAfterALeadingError(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot}, "hw-1")
	if err := r.sync(); err != nil { // start
		t.Fatal(err)
	}
	// start's Leading and act's writeLedger Leading pass; createJobs' fails.
	calls := 0
	r.c.opts.Leading = func(context.Context, string) error {
		calls++
		if calls == 2 {
			return fmt.Errorf("etcd: transient")
		}
		return nil
	}
	err := r.sync()
	t.Logf("sync: %v", err)
	for range 5 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	camp := r.refresh()
	if n := len(r.jobs()); n == 0 {
		t.Errorf("member stranded: no Job after 5 more syncs; status counts %+v phase %s", camp.Status.Counts, camp.Status.Phase)
	}
}

// A ledger write that fails drops the progress and what pointed into it: a
// failure is counted once after the reload.
func TestFailureCountedOnceAcrossALedgerError(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(2))},
		FailurePolicy:  v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: ptr.To(intstr.FromInt32(10))}}}, "hw-1", "hw-2")
	if err := r.sync(); err != nil { // start
		t.Fatal(err)
	}
	// hw-1's create meets a busy Hardware; hw-2's works.
	r.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.CreateAction).GetObject().(*v1alpha1.Job).Spec.HardwareRef.Name == "hw-1" {
			return true, nil, busy
		}
		return false, nil, nil
	})
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	if n := len(r.jobs()); n != 1 {
		t.Fatalf("jobs %d", n)
	}
	// hw-2's Job succeeds.
	job := r.jobs()[0]
	job.Status.Phase = v1alpha1.JobSucceeded
	r.client.StargateV1alpha1().Jobs("dc-a").UpdateStatus(context.TODO(), &job, metav1.UpdateOptions{})
	r.c.onJob(&job, true)
	// The outcome's ledger write fails once (Leading cannot reach etcd).
	r.failLdr.Store(1)
	t.Logf("sync with failing ledger write: %v", r.sync())
	// hw-1's Hardware is deleted meanwhile: its create is now refused.
	r.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "stargate.io", Resource: "hardwares"}, "hw-1")
	})
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	p := r.d.progress
	camp := r.refresh()
	t.Logf("status counts %+v; progress failed=%d failures=%d", camp.Status.Counts, p.failed, len(p.failures))
	if p.failed != 1 || camp.Status.Counts.Failed != 1 {
		t.Errorf("one member failed, counted %d (status counts %+v)", p.failed, camp.Status.Counts)
	}
}

// A member's Job fails; the unfinished-Jobs informer drops it before the
// troubled-Hardware informer sees the Hardware in error (the server writes
// the Hardware in the Job's after-update hook): the member still counts as
// unavailable, so no other starts under maxUnavailable.global=1.
func TestJustFailedMemberCountsAsUnavailable(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(1))},
		FailurePolicy:  v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: ptr.To(intstr.FromInt32(10))}}}, "hw-1", "hw-2")
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.jobs()); n != 1 {
		t.Fatalf("jobs %d", n)
	}
	job := r.jobs()[0]
	job.Status.Phase, job.Status.DCJobID = v1alpha1.JobFailed, "dc-1"
	r.client.StargateV1alpha1().Jobs("dc-a").UpdateStatus(context.TODO(), &job, metav1.UpdateOptions{})
	r.c.onJob(&job, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	// Now the Hardware-in-error event arrives.
	r.f.Stargate().V1alpha1().Hardwares().Informer().GetIndexer().Add(&v1alpha1.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: job.Spec.HardwareRef.Name, Namespace: "dc-a"}, Status: v1alpha1.HardwareStatus{State: v1alpha1.HardwareStateError}})
	u := r.c.unavailable(r.d.progress)
	t.Logf("jobs %d, unavailable %d", len(r.jobs()), u.Total)
	if u.Total > 1 {
		t.Errorf("maxUnavailable.global=1 exceeded: %d unavailable", u.Total)
	}
}

// budgets looks at the waves with failures only: a sync does not grow with
// the number of waves (100,000 waves of one member).
func BenchmarkDecideManyWaves(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p := newProgress("uid", ledgerOf(1, n, 1), nil)
			spec := &v1alpha1.CampaignSpec{}
			v1alpha1.SetDefaults_CampaignSpec(spec)
			c := &Controller{}
			for range b.N {
				s := &step{cancelDCs: map[string]bool{}, stopRunning: map[string]bool{}, dcReason: map[string]string{}, exempt: map[string]bool{}}
				c.budgets(spec, p, s)
			}
		})
	}
}

// The unfinished Job of a deleted predecessor of the same name (its Jobs
// stay standalone, or while the GC cancels them) counts as another origin's.
func TestPredecessorJobsCountAsUnavailable(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(1))}}, "hw-1", "hw-2")
	r.f.Stargate().V1alpha1().Jobs().Informer().GetIndexer().Add(&v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "hw-2-camp-old", Namespace: "dc-a", Labels: map[string]string{v1alpha1.CampaignLabel: "camp"}},
		Spec:       v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "hw-2"}}, Status: v1alpha1.JobStatus{Phase: v1alpha1.JobRunning}})
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	u := r.c.unavailable(r.d.progress)
	t.Logf("jobs created %d; unavailable as counted %d", len(r.jobs()), u.Total)
	if len(r.jobs()) > 0 {
		t.Errorf("hw-2 busy with the predecessor's Job, yet hw-1 started under maxUnavailable.global=1")
	}
}
