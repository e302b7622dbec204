package campaigns

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
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
	r.d = c.newDriven("x")
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
	u := r.c.unavailable(r.d.progress).u
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
	u := r.c.unavailable(r.d.progress).u
	t.Logf("jobs created %d; unavailable as counted %d", len(r.jobs()), u.Total)
	if len(r.jobs()) > 0 {
		t.Errorf("hw-2 busy with the predecessor's Job, yet hw-1 started under maxUnavailable.global=1")
	}
}

// TestOutcome: a Job stopped before it finished (spec.cancel, a delete) is
// a cancelled member; one that failed first is a failure even when deleted
// afterwards (a TTL of 0 deletes it at once), else no budget would trip.
func TestOutcome(t *testing.T) {
	deleted := metav1.Now()
	for _, tc := range []struct {
		name   string
		job    v1alpha1.Job
		want   string
		reason string
	}{
		{"succeeded", v1alpha1.Job{Status: v1alpha1.JobStatus{Phase: v1alpha1.JobSucceeded}}, stateSucceeded, ""},
		{"failed", v1alpha1.Job{Status: v1alpha1.JobStatus{Phase: v1alpha1.JobFailed, Reason: "DatacenterJobFailed"}}, stateFailed, "DatacenterJobFailed"},
		{"failed, then deleted by its TTL", v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted},
			Status: v1alpha1.JobStatus{Phase: v1alpha1.JobFailed, Reason: "DatacenterJobFailed"}}, stateFailed, "DatacenterJobFailed"},
		{"failed, then cancelled", v1alpha1.Job{Spec: v1alpha1.JobSpec{Cancel: true},
			Status: v1alpha1.JobStatus{Phase: v1alpha1.JobFailed, Reason: "BackoffLimitExceeded"}}, stateFailed, "BackoffLimitExceeded"},
		{"cancelled at the datacenter by itself", v1alpha1.Job{Status: v1alpha1.JobStatus{Phase: v1alpha1.JobFailed, Reason: "CancelledAtDatacenter"}}, stateFailed, "CancelledAtDatacenter"},
		{"cancelled", v1alpha1.Job{Spec: v1alpha1.JobSpec{Cancel: true},
			Status: v1alpha1.JobStatus{Phase: v1alpha1.JobFailed, Reason: v1alpha1.JobReasonCancelled}}, stateCancelled, v1alpha1.JobReasonCancelled},
		{"deleted", v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted},
			Status: v1alpha1.JobStatus{Phase: v1alpha1.JobFailed, Reason: v1alpha1.JobReasonDeleted}}, stateCancelled, v1alpha1.JobReasonDeleted},
	} {
		if state, reason := outcome(&tc.job); state != tc.want || reason != tc.reason {
			t.Errorf("%s: %s (%s), want %s (%s)", tc.name, state, reason, tc.want, tc.reason)
		}
	}
}

// TestFailedAndDeletedJobTripsTheBudget: with a Job TTL of 0 the Job
// controller deletes a failed Job at once; the campaign finalizer keeps
// it, with its deletionTimestamp, until counted — as a failure.
func TestFailedAndDeletedJobTripsTheBudget(t *testing.T) {
	zero := intstr.FromInt32(0)
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		FailurePolicy: v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: &zero}}}, "hw-1", "hw-2")
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.jobs()); n != 1 {
		t.Fatalf("jobs %d, want 1 (maxUnavailable 10%% of 2 is 1)", n)
	}
	job := r.jobs()[0]
	now := metav1.Now()
	job.DeletionTimestamp = &now
	job.Status.Phase, job.Status.Reason, job.Status.DCJobID = v1alpha1.JobFailed, "DatacenterJobFailed", "dc-1"
	r.client.StargateV1alpha1().Jobs("dc-a").Update(context.TODO(), &job, metav1.UpdateOptions{})
	r.c.onJob(&job, true)
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	camp := r.refresh()
	paused := apimeta.FindStatusCondition(camp.Status.Conditions, v1alpha1.CampaignConditionPaused)
	if camp.Status.Counts.Failed != 1 || camp.Status.Counts.Cancelled != 0 || paused == nil || paused.Reason != v1alpha1.CampaignReasonFailureBudgetExceeded {
		t.Errorf("counts %+v, Paused condition %+v: want the failure counted and the budget of 0 tripped", camp.Status.Counts, paused)
	}
	if n := len(r.jobs()); n != 1 {
		t.Errorf("%d Jobs: a member started past a tripped budget", n)
	}
}

// TestStrayJobIsCancelledAndCounted: a Job created for a member the ledger
// says is done (a create that landed after its member was recorded
// cancelled) is cancelled, counts as unavailable while it runs, and is
// released once it finished.
func TestStrayJobIsCancelledAndCounted(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(2))}}, "hw-1", "hw-2", "hw-3", "hw-4")
	for range 2 { // start, then two members get Jobs
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	jobs := r.jobs()
	if len(jobs) != 2 {
		t.Fatalf("%d Jobs, want 2", len(jobs))
	}
	camp := r.refresh()
	p := r.d.progress
	var pending []*member
	for _, m := range p.members {
		if m.state == statePending {
			pending = append(pending, m)
		}
	}
	// One pending member is recorded cancelled (as stopRunning records one
	// whose Job it did not find), and then its late create lands.
	m := pending[0]
	p.set(m, stateCancelled, "", ReasonCampaignCancelled)
	stray := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: jobName(camp, m), Namespace: "dc-a", UID: "stray-uid",
		Labels:          map[string]string{v1alpha1.CampaignLabel: "camp"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(camp, v1alpha1.SchemeGroupVersion.WithKind("Campaign"))},
		Finalizers:      []string{v1alpha1.CampaignFinalizer}},
		Spec:   v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: m.Name}, Operation: v1alpha1.OperationReboot},
		Status: v1alpha1.JobStatus{Phase: v1alpha1.JobRunning}}
	if _, err := r.client.StargateV1alpha1().Jobs("dc-a").Create(context.TODO(), stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.f.Stargate().V1alpha1().Jobs().Informer().GetIndexer().Add(stray)
	r.c.onJob(stray, false)
	// One of the two started members' Job succeeds: a slot frees, but the
	// stray runs, so the last pending member must still wait.
	done := jobs[0]
	done.Status.Phase = v1alpha1.JobSucceeded
	r.client.StargateV1alpha1().Jobs("dc-a").UpdateStatus(context.TODO(), &done, metav1.UpdateOptions{})
	r.c.onJob(&done, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	got, _ := r.client.StargateV1alpha1().Jobs("dc-a").Get(context.TODO(), stray.Name, metav1.GetOptions{})
	if !got.Spec.Cancel {
		t.Errorf("the stray Job was not asked to cancel")
	}
	if n := len(r.jobs()); n != 3 {
		t.Errorf("%d Jobs, want 3: the last member started while the stray runs under maxUnavailable.global=2", n)
	}
	// The stray ends (cancelled before it was sent) and leaves the cache.
	got.Status.Phase, got.Status.Reason = v1alpha1.JobFailed, v1alpha1.JobReasonCancelled
	r.client.StargateV1alpha1().Jobs("dc-a").Update(context.TODO(), got, metav1.UpdateOptions{})
	r.f.Stargate().V1alpha1().Jobs().Informer().GetIndexer().Delete(stray)
	r.c.onJob(got, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	got, _ = r.client.StargateV1alpha1().Jobs("dc-a").Get(context.TODO(), stray.Name, metav1.GetOptions{})
	if len(got.Finalizers) != 0 {
		t.Errorf("the finished stray keeps finalizers %v", got.Finalizers)
	}
	if m.state != stateCancelled || p.total().Cancelled != 1 {
		t.Errorf("member %s, cancelled %d: the stray changed its member's record", m.state, p.total().Cancelled)
	}
	if n := len(r.jobs()); n != 4 {
		t.Errorf("%d Jobs, want 4: the last member starts once the stray ended", n)
	}
}

// TestOtherOriginJobJustEndedCountsAsUnavailable: another origin's Job
// leaves the unfinished cache before its Hardware's error state arrives;
// for endedGrace its Hardware still counts as unavailable.
func TestOtherOriginJobJustEndedCountsAsUnavailable(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, Paused: true}, "hw-1", "hw-2")
	for range 2 { // start, load
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	if u := r.c.unavailable(r.d.progress).u; u.Total != 0 {
		t.Fatalf("unavailable %d in a paused Campaign, want 0", u.Total)
	}
	other := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Namespace: "dc-a"},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "hw-2"}}}
	r.c.onJob(other, true)
	if u := r.c.unavailable(r.d.progress).u; u.Total != 1 {
		t.Errorf("unavailable %d right after another origin's Job on hw-2 ended, want 1", u.Total)
	}
	r.c.opts.Clock = clocktesting.NewFakeClock(time.Now().Add(endedGrace + time.Second))
	if u := r.c.unavailable(r.d.progress).u; u.Total != 0 {
		t.Errorf("unavailable %d after endedGrace, want 0", u.Total)
	}
}

// TestCancelBeforeStartEndsCancelled: a Campaign held before its start (a
// Template missing) and then cancelled ends Cancelled, with Failed=True
// (reason Cancelled) for kubectl wait, and no Job.
func TestCancelBeforeStartEndsCancelled(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave,
		TemplateRef: &v1alpha1.LocalObjectReference{Name: "missing"}}, "hw-1")
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	camp := r.refresh()
	if camp.Status.Phase == v1alpha1.CampaignCancelled || camp.Status.StartTime != nil {
		t.Fatalf("phase %s, started %v before the cancel", camp.Status.Phase, camp.Status.StartTime)
	}
	camp.Spec.Cancel = true
	if _, err := r.client.StargateV1alpha1().Campaigns().Update(context.TODO(), camp, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.refresh()
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	camp = r.refresh()
	failed := apimeta.FindStatusCondition(camp.Status.Conditions, v1alpha1.CampaignConditionFailed)
	if camp.Status.Phase != v1alpha1.CampaignCancelled || camp.Status.CompletionTime == nil || failed == nil ||
		failed.Status != metav1.ConditionTrue || failed.Reason != "Cancelled" {
		t.Errorf("phase %s, completion %v, Failed condition %+v; want Cancelled, a completion time, Failed=True (Cancelled)",
			camp.Status.Phase, camp.Status.CompletionTime, failed)
	}
	if n := len(r.jobs()); n != 0 {
		t.Errorf("%d Jobs created for a Campaign cancelled before it started", n)
	}
}

// TestStrayOfAnEndedCampaignIsCancelled: a create that lands after the
// Campaign ended (its member done, its Job collected) is cancelled and,
// once finished, released: an ended Campaign still looks at its Jobs.
func TestStrayOfAnEndedCampaignIsCancelled(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot}, "hw-1")
	for range 2 { // start, then hw-1's Job
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	job := r.jobs()[0]
	job.Status.Phase = v1alpha1.JobSucceeded
	r.client.StargateV1alpha1().Jobs("dc-a").UpdateStatus(context.TODO(), &job, metav1.UpdateOptions{})
	r.c.onJob(&job, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	if camp := r.refresh(); camp.Status.Phase != v1alpha1.CampaignComplete {
		t.Fatalf("phase %s, want Complete", camp.Status.Phase)
	}
	// Its Job is collected; then a late create of it lands.
	r.client.StargateV1alpha1().Jobs("dc-a").Delete(context.TODO(), job.Name, metav1.DeleteOptions{})
	stray := job.DeepCopy()
	stray.UID, stray.ResourceVersion, stray.Status = "late-uid", "", v1alpha1.JobStatus{}
	stray.Finalizers = []string{v1alpha1.CampaignFinalizer}
	if _, err := r.client.StargateV1alpha1().Jobs("dc-a").Create(context.TODO(), stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.c.onJob(stray, false)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	got, _ := r.client.StargateV1alpha1().Jobs("dc-a").Get(context.TODO(), stray.Name, metav1.GetOptions{})
	if !got.Spec.Cancel {
		t.Errorf("the late Job of a Complete Campaign was not asked to cancel")
	}
	got.Status.Phase, got.Status.Reason = v1alpha1.JobFailed, v1alpha1.JobReasonCancelled
	r.client.StargateV1alpha1().Jobs("dc-a").Update(context.TODO(), got, metav1.UpdateOptions{})
	r.c.onJob(got, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	if got, _ = r.client.StargateV1alpha1().Jobs("dc-a").Get(context.TODO(), stray.Name, metav1.GetOptions{}); len(got.Finalizers) != 0 {
		t.Errorf("the late Job keeps finalizers %v once finished", got.Finalizers)
	}
}

// TestStrayHoldsTheCampaignOpen: a late create's Job for a member given
// up runs when the last counted member ends: the Campaign does not end
// (its phase stays Running, naming the Job) until that Job ended too.
func TestStrayHoldsTheCampaignOpen(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(1))}}, "hw-1", "hw-2")
	for range 2 { // start; one member's Job
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	running := r.jobs()[0]
	camp := r.refresh()
	camp.Spec.Cancel = true
	r.client.StargateV1alpha1().Campaigns().Update(context.TODO(), camp, metav1.UpdateOptions{})
	camp = r.refresh()
	if err := r.sync(); err != nil { // the other member is given up; the running Job asked to cancel
		t.Fatal(err)
	}
	var givenUp *member
	for _, m := range r.d.progress.members {
		if m.state == stateCancelled {
			givenUp = m
		}
	}
	if givenUp == nil {
		t.Fatal("no member given up by the cancel")
	}
	stray := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: jobName(camp, givenUp), Namespace: "dc-a", UID: "late",
		Labels:          map[string]string{v1alpha1.CampaignLabel: "camp"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(camp, v1alpha1.SchemeGroupVersion.WithKind("Campaign"))},
		Finalizers:      []string{v1alpha1.CampaignFinalizer}},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: givenUp.Name}, Operation: v1alpha1.OperationReboot}}
	r.client.StargateV1alpha1().Jobs("dc-a").Create(context.TODO(), stray, metav1.CreateOptions{})
	r.f.Stargate().V1alpha1().Jobs().Informer().GetIndexer().Add(stray)
	r.c.onJob(stray, false)
	got, _ := r.client.StargateV1alpha1().Jobs("dc-a").Get(context.TODO(), running.Name, metav1.GetOptions{})
	got.Status.Phase, got.Status.Reason = v1alpha1.JobFailed, v1alpha1.JobReasonCancelled
	r.client.StargateV1alpha1().Jobs("dc-a").Update(context.TODO(), got, metav1.UpdateOptions{})
	r.c.onJob(got, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	camp = r.refresh()
	progressing := apimeta.FindStatusCondition(camp.Status.Conditions, v1alpha1.CampaignConditionProgressing)
	if camp.Status.Phase != v1alpha1.CampaignRunning || progressing == nil || !strings.Contains(progressing.Message, stray.Name) {
		t.Errorf("phase %s, Progressing %+v; want Running, naming the late Job %s", camp.Status.Phase, progressing, stray.Name)
	}
	// The late Job ends: the Campaign with it.
	s, _ := r.client.StargateV1alpha1().Jobs("dc-a").Get(context.TODO(), stray.Name, metav1.GetOptions{})
	s.Status.Phase, s.Status.Reason = v1alpha1.JobFailed, v1alpha1.JobReasonCancelled
	r.client.StargateV1alpha1().Jobs("dc-a").Update(context.TODO(), s, metav1.UpdateOptions{})
	r.f.Stargate().V1alpha1().Jobs().Informer().GetIndexer().Delete(stray)
	r.c.onJob(s, true)
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	if camp = r.refresh(); camp.Status.Phase != v1alpha1.CampaignCancelled {
		t.Errorf("phase %s once the late Job ended, want Cancelled", camp.Status.Phase)
	}
}
