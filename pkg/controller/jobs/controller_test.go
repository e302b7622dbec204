package jobs

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/testutil"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

type harness struct {
	t        testing.TB
	ctx      context.Context
	client   *clientfake.Clientset
	c        *Controller
	dcs      map[string]*fake.Client
	clock    *testingclock.FakeClock
	recorder *events.FakeRecorder
	// crashAt makes the controller stop at that failpoint; notLeading makes
	// it believe it lost the leader election.
	crashAt    string
	notLeading bool
	// fronts, when set, stand before the fake datacenters (see front).
	fronts map[string]*front
	// late, when set, stands before every fake datacenter (see lateFront).
	late   *lateFront
	server *apiServer
}

func datacenterObj(name string, mutate ...func(*v1alpha1.Datacenter)) *v1alpha1.Datacenter {
	dc := &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.DatacenterSpec{Endpoint: "https://" + name + ".example", MaxConcurrentJobs: ptr.To[int32](10)}}
	for _, m := range mutate {
		m(dc)
	}
	return dc
}

func hardwareObj(ns, name, mac string) *v1alpha1.Hardware {
	return &v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.HardwareSpec{MAC: mac, IPv4: "10.0.1.5"}}
}

func templateObj(ns string) *v1alpha1.Template {
	return &v1alpha1.Template{ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: ns},
		Spec: v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os.img"}}
}

func jobObj(ns, name, hw string, op v1alpha1.Operation) *v1alpha1.Job {
	j := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name)},
		Spec:   v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hw}, Operation: op, BackoffLimit: ptr.To[int32](2)},
		Status: v1alpha1.JobStatus{Phase: v1alpha1.JobPending}}
	if op == v1alpha1.OperationRepave {
		j.Spec.TemplateRef = &v1alpha1.LocalObjectReference{Name: "os-2-0-0"}
	}
	return j
}

// newHarness runs the controller's informers over a fake clientset holding
// objs; each Datacenter named in dcNames gets its own fake datacenter.
func newHarness(t testing.TB, dcNames []string, objs ...runtime.Object) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := clientfake.NewClientset(objs...)
	// The fake's watches start from "now": an event between an informer's
	// list and its watch is lost for good. newHarness returns only once
	// every informer watches.
	var watchMu sync.Mutex
	watching := sets.New[string]()
	client.PrependWatchReactor("*", func(a clienttesting.Action) (bool, watch.Interface, error) {
		watchMu.Lock()
		watching.Insert(a.GetResource().Resource)
		watchMu.Unlock()
		return false, nil, nil
	})
	server := serveLikeStargate(client, objs)
	factory := informers.NewSharedInformerFactory(client, 0)
	v1 := factory.Stargate().V1alpha1()
	h := &harness{t: t, ctx: ctx, client: client, dcs: map[string]*fake.Client{}, clock: testingclock.NewFakeClock(t0), server: server}
	for _, n := range dcNames {
		h.dcs[n] = fake.New()
	}
	clientFor := func(dc *v1alpha1.Datacenter) (datacenter.Client, error) {
		if h.late != nil {
			return h.late, nil
		}
		if f, ok := h.fronts[dc.Name]; ok {
			return f, nil
		}
		if c, ok := h.dcs[dc.Name]; ok {
			return c, nil
		}
		return nil, errors.New("no fake for " + dc.Name)
	}
	h.recorder = events.NewFakeRecorder(100)
	c, err := New(client, v1.Jobs(), v1.Templates(), v1.Datacenters(), clientFor,
		Options{Clock: h.clock, PollInterval: time.Second, MinPollInterval: 100 * time.Millisecond, WaitInterval: 5 * time.Second, Recorder: h.recorder,
			Failpoint: func(point string) error {
				if point == h.crashAt {
					return errors.New("crash injected at " + point)
				}
				return nil
			},
			Leading: func(context.Context, string) error {
				if h.notLeading {
					return errors.New("not leading")
				}
				return nil
			}})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	started := factory.WaitForCacheSync(ctx.Done())
	if err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		watchMu.Lock()
		defer watchMu.Unlock()
		return watching.Len() >= len(started), nil
	}); err != nil {
		t.Fatalf("informers watching %v of %d", sets.List(watching), len(started))
	}
	h.c = c
	return h
}

// sync runs one sync of a Job once the cache has caught up with the API.
func (h *harness) sync(ns, name string) (time.Duration, error) {
	h.t.Helper()
	h.waitForCache(ns, name)
	return h.c.sync(h.ctx, ns+"/"+name)
}

func (h *harness) waitForCache(ns, name string) {
	h.t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		live, err := h.client.StargateV1alpha1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cached, err := h.c.jobs.Jobs(ns).Get(name)
		return err == nil && apiequality.Semantic.DeepEqual(live, cached), nil
	})
	if err != nil {
		h.t.Fatalf("cache never caught up with %s/%s: %v", ns, name, err)
	}
}

func (h *harness) job(ns, name string) *v1alpha1.Job {
	h.t.Helper()
	j, err := h.client.StargateV1alpha1().Jobs(ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) hardware(ns, name string) *v1alpha1.Hardware {
	h.t.Helper()
	hw, err := h.client.StargateV1alpha1().Hardwares(ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return hw
}

func TestRepaveRunsToSuccess(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		templateObj("dc-west"), jobObj("dc-west", "repave-1", "server-001", v1alpha1.OperationRepave))
	dc := h.dcs["dc-west"]

	after, err := h.sync("dc-west", "repave-1")
	if err != nil || after != 100*time.Millisecond {
		t.Fatalf("submit: requeue %s (want the first poll after MinPollInterval), err %v", after, err)
	}
	j := h.job("dc-west", "repave-1")
	if j.Status.Phase != v1alpha1.JobRunning || j.Status.DCJobID == "" || j.Status.Attempts != 1 ||
		j.Status.Template == nil || j.Status.Template.OSVersion != "2.0.0" || !j.Status.StartTime.Equal(&metav1.Time{Time: t0}) {
		t.Fatalf("after submit: %+v", j.Status)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.State != v1alpha1.HardwareStateProvisioning {
		t.Errorf("hardware while repaving: %+v", hw.Status)
	}
	if dc.Executions("uid-repave-1") != 1 {
		t.Errorf("the idempotency key is not the Job UID")
	}

	// Still running at the datacenter: polls back off with its running time
	// (half of it), from MinPollInterval up to PollInterval.
	h.clock.Step(600 * time.Millisecond)
	if after, err := h.sync("dc-west", "repave-1"); err != nil || after != 300*time.Millisecond {
		t.Fatalf("poll after 0.6s running: %s (want 0.3s) %v", after, err)
	}
	h.clock.Step(10 * time.Second)
	if after, err := h.sync("dc-west", "repave-1"); err != nil || after != time.Second {
		t.Fatalf("poll after 10s running: %s (want PollInterval 1s) %v", after, err)
	}
	dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:01", CurrentOS: "2.0.0", State: "ready", PowerState: datacenter.PowerOn})
	if err := dc.Finish(j.Status.DCJobID, datacenter.JobSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(30*time.Second - 10600*time.Millisecond)
	if after, err := h.sync("dc-west", "repave-1"); err != nil || after != 0 {
		t.Fatalf("finish: %s %v", after, err)
	}
	j = h.job("dc-west", "repave-1")
	if j.Status.Phase != v1alpha1.JobSucceeded || !j.Status.CompletionTime.Equal(&metav1.Time{Time: t0.Add(30 * time.Second)}) ||
		!hasTrue(j.Status.Conditions, ConditionComplete) {
		t.Errorf("after success: %+v", j.Status)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.State != v1alpha1.HardwareStateReady || hw.Status.CurrentOS != "2.0.0" {
		t.Errorf("hardware after success: %+v", hw.Status)
	}
	// A finished Job is left alone.
	if after, err := h.sync("dc-west", "repave-1"); err != nil || after != 0 || dc.Calls(fake.MethodGetJob) != 3 {
		t.Errorf("sync of a finished Job: %s %v, %d polls", after, err, dc.Calls(fake.MethodGetJob))
	}
}

func TestJobsWaitForTheirDatacenter(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	after, err := h.sync("dc-west", "reboot-1")
	if j := h.job("dc-west", "reboot-1"); err != nil || after != 5*time.Second || j.Status.Phase != v1alpha1.JobPending ||
		j.Status.Reason != ReasonDatacenterNotFound {
		t.Fatalf("no datacenter: %s %v %+v", after, err, j.Status)
	}

	paused := datacenterObj("dc-west", func(dc *v1alpha1.Datacenter) { dc.Spec.Paused = true })
	if _, err := h.client.StargateV1alpha1().Datacenters().Create(h.ctx, paused, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := h.c.dcs.Get("dc-west"); return err == nil })
	h.sync("dc-west", "reboot-1")
	if j := h.job("dc-west", "reboot-1"); j.Status.Reason != ReasonDatacenterPaused || h.dcs["dc-west"].Calls(fake.MethodSubmit) != 0 {
		t.Fatalf("paused: %+v", j.Status)
	}
}

func TestBusyDatacenterHoldsJobs(t *testing.T) {
	running := jobObj("dc-west", "running", "server-002", v1alpha1.OperationReboot)
	running.Status.Phase, running.Status.DCJobID = v1alpha1.JobRunning, "x"
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west", func(dc *v1alpha1.Datacenter) { dc.Spec.MaxConcurrentJobs = ptr.To[int32](1) }),
		hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), running, jobObj("dc-west", "waiting", "server-001", v1alpha1.OperationReboot))
	h.sync("dc-west", "waiting")
	if j := h.job("dc-west", "waiting"); j.Status.Reason != ReasonDatacenterBusy || h.dcs["dc-west"].Calls(fake.MethodSubmit) != 0 {
		t.Fatalf("busy: %+v", j.Status)
	}
}

// A datacenter that is down (503, connection refused) started nothing: the
// Job waits for it however long the outage lasts instead of failing on its
// backoff limit, and starts once the datacenter answers.
func TestAnUnavailableDatacenterMakesJobsWaitNotFail(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	outage := v1alpha1.DefaultBackoffLimit + 3
	for range outage {
		dc.FailNext(fake.MethodSubmit, fake.Unavailable())
	}
	for i := range outage {
		after, err := h.sync("dc-west", "reboot-1")
		if err != nil {
			t.Fatalf("sync %d during the outage: %v", i, err)
		}
		j := h.job("dc-west", "reboot-1")
		if j.Status.Phase != v1alpha1.JobPending || j.Status.Reason != ReasonDatacenterDown || after <= 0 {
			t.Fatalf("sync %d during the outage: requeue after %s, status %+v", i, after, j.Status)
		}
	}
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || j.Status.Attempts != 1 {
		t.Errorf("once the datacenter is back: %+v", j.Status)
	}
	if n := dc.Calls(fake.MethodSubmit); int32(n) != outage+1 {
		t.Errorf("%d submissions, want %d", n, outage+1)
	}
}

func TestTransientErrorsAreRetriedUpToTheBackoffLimit(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot), jobObj("dc-west", "reboot-2", "server-002", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]

	dc.FailNext(fake.MethodSubmit, fake.Transient())
	if _, err := h.sync("dc-west", "reboot-1"); err == nil {
		t.Fatal("a transient error was not returned for a rate-limited retry")
	}
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobPending || j.Status.Attempts != 1 || j.Status.Reason != ReasonRetrying {
		t.Fatalf("after one failure: %+v", j.Status)
	}
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || j.Status.Attempts != 2 {
		t.Errorf("after the retry: %+v", j.Status)
	}

	// backoffLimit 2: the third failure fails the Job.
	dc.FailNext(fake.MethodSubmit, fake.Transient(), fake.Transient(), fake.Transient())
	for range 2 {
		if _, err := h.sync("dc-west", "reboot-2"); err == nil {
			t.Fatal("expected a retryable error")
		}
	}
	if _, err := h.sync("dc-west", "reboot-2"); err != nil {
		t.Fatal(err)
	}
	h.settleWindow("dc-west", "reboot-2")
	if j := h.job("dc-west", "reboot-2"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonBackoffLimitExceeded ||
		!hasTrue(j.Status.Conditions, ConditionFailed) {
		t.Errorf("after the backoff limit: %+v", j.Status)
	}
}

func TestRejectedAndFailedJobs(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"),
		jobObj("dc-west", "rejected", "server-002", v1alpha1.OperationReboot), jobObj("dc-west", "fails", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	dc.FailNext(fake.MethodSubmit, &datacenter.Error{StatusCode: http.StatusBadRequest, Message: "no such machine", Op: "fake"})
	if _, err := h.sync("dc-west", "rejected"); err != nil {
		t.Fatal(err)
	}
	h.settleWindow("dc-west", "rejected")
	if j := h.job("dc-west", "rejected"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonRejected || dc.Calls(fake.MethodSubmit) != 1 {
		t.Errorf("a 4xx must fail the Job without retrying: %+v", j.Status)
	}

	h.sync("dc-west", "fails")
	j := h.job("dc-west", "fails")
	dc.Finish(j.Status.DCJobID, datacenter.JobFailed, "disk on fire")
	h.sync("dc-west", "fails")
	j = h.job("dc-west", "fails")
	if j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonDatacenterJobFailed || j.Status.Message != "disk on fire" {
		t.Errorf("failed at the datacenter: %+v", j.Status)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.State != v1alpha1.HardwareStateError || !hasTrue(hw.Status.Conditions, ConditionFailed) {
		t.Errorf("hardware after a failed Job: %+v", hw.Status)
	}
}

// TestResubmitAfterLostStatusRunsOnce: the controller submitted but its status
// write was lost (crash); the next sync submits again with the same key and
// adopts the same datacenter job.
func TestResubmitAfterLostStatusRunsOnce(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	first, err := dc.Submit(h.ctx, "uid-reboot-1", datacenter.JobRequest{Operation: datacenter.OperationReboot,
		Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "reboot-1"); j.Status.DCJobID != first.ID || dc.Executions("uid-reboot-1") != 1 {
		t.Errorf("adopted %q (want %s), %d executions", j.Status.DCJobID, first.ID, dc.Executions("uid-reboot-1"))
	}
}

func TestRoutingToEachDatacenter(t *testing.T) {
	h := newHarness(t, []string{"dc-west", "dc-east"}, datacenterObj("dc-west"), datacenterObj("dc-east"),
		hardwareObj("dc-west", "w1", "aa:bb:cc:dd:ee:01"), hardwareObj("dc-east", "e1", "aa:bb:cc:dd:ee:02"),
		jobObj("dc-west", "jw", "w1", v1alpha1.OperationPowerOff), jobObj("dc-east", "je", "e1", v1alpha1.OperationPowerOn))
	h.sync("dc-west", "jw")
	h.sync("dc-east", "je")
	if h.dcs["dc-west"].Executions("uid-jw") != 1 || h.dcs["dc-west"].Executions("uid-je") != 0 ||
		h.dcs["dc-east"].Executions("uid-je") != 1 || h.dcs["dc-east"].Executions("uid-jw") != 0 {
		t.Error("a Job went to the wrong datacenter")
	}
	// A power-off that succeeds leaves the Hardware off.
	j := h.job("dc-west", "jw")
	h.dcs["dc-west"].Finish(j.Status.DCJobID, datacenter.JobSucceeded, "")
	h.sync("dc-west", "jw")
	if hw := h.hardware("dc-west", "w1"); hw.Status.State != v1alpha1.HardwareStateOff {
		t.Errorf("after power-off: %+v", hw.Status)
	}
}

func hasTrue(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ && c.Status == metav1.ConditionTrue {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatal("condition never met")
	}
}

func TestCancel(t *testing.T) {
	early := jobObj("dc-west", "early", "server-001", v1alpha1.OperationReboot)
	early.Spec.Cancel = true
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		early, jobObj("dc-west", "late", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	if _, err := h.sync("dc-west", "early"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "early"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonCancelledByUser ||
		dc.Calls(fake.MethodSubmit) != 0 || dc.Calls(fake.MethodCancel) != 0 {
		t.Errorf("cancelled before it started: %+v", j.Status)
	}

	h.sync("dc-west", "late")
	j := h.job("dc-west", "late")
	j.Spec.Cancel = true
	if _, err := h.client.StargateV1alpha1().Jobs("dc-west").Update(h.ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sync("dc-west", "late"); err != nil {
		t.Fatal(err)
	}
	dcJob, _ := dc.GetJob(h.ctx, j.Status.DCJobID)
	if j := h.job("dc-west", "late"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonCancelledByUser ||
		dcJob.State != datacenter.JobCancelled {
		t.Errorf("cancelled while running: job %+v, datacenter job %s", j.Status, dcJob.State)
	}
}

// TestCancelOfAJobThatFailedMeanwhile: the datacenter's job failed before
// the cancel reached it (between two polls): the Job fails with the
// datacenter's reason, a failure (a Campaign's budgets count it), not a
// cancellation.
func TestCancelOfAJobThatFailedMeanwhile(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "doomed", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	h.sync("dc-west", "doomed")
	j := h.job("dc-west", "doomed")
	if err := dc.Finish(j.Status.DCJobID, datacenter.JobFailed, "disk on fire"); err != nil {
		t.Fatal(err)
	}
	h.cancel("dc-west", "doomed")
	if _, err := h.sync("dc-west", "doomed"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "doomed"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonDatacenterJobFailed || j.Status.Message != "disk on fire" {
		t.Errorf("cancelled after it failed at the datacenter: %+v, want Failed with %s and the datacenter's message", j.Status, ReasonDatacenterJobFailed)
	}
}

func TestActiveDeadline(t *testing.T) {
	j := jobObj("dc-west", "slow", "server-001", v1alpha1.OperationReboot)
	j.Spec.ActiveDeadlineSeconds = ptr.To[int64](60)
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), j)
	h.sync("dc-west", "slow")
	h.clock.Step(59*time.Second + 500*time.Millisecond)
	if after, err := h.sync("dc-west", "slow"); err != nil || after != 500*time.Millisecond {
		t.Fatalf("near the deadline: requeue %s (want the 0.5s left), %v", after, err)
	}
	h.clock.Step(time.Second)
	if _, err := h.sync("dc-west", "slow"); err != nil {
		t.Fatal(err)
	}
	got := h.job("dc-west", "slow")
	dcJob, _ := h.dcs["dc-west"].GetJob(h.ctx, got.Status.DCJobID)
	if got.Status.Phase != v1alpha1.JobFailed || got.Status.Reason != ReasonDeadlineExceeded || dcJob.State != datacenter.JobCancelled {
		t.Errorf("past the deadline: %+v, datacenter job %s", got.Status, dcJob.State)
	}
}

func TestTTLAfterFinished(t *testing.T) {
	j := jobObj("dc-west", "done", "server-001", v1alpha1.OperationReboot)
	j.Spec.TTLSecondsAfterFinished = ptr.To[int32](100)
	j.Status.Phase, j.Status.CompletionTime = v1alpha1.JobSucceeded, &metav1.Time{Time: t0}
	h := newHarness(t, nil, j)
	h.clock.Step(40 * time.Second)
	if after, err := h.sync("dc-west", "done"); err != nil || after != 60*time.Second {
		t.Fatalf("before the TTL: requeue %s, %v", after, err)
	}
	h.clock.Step(60 * time.Second)
	if _, err := h.sync("dc-west", "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.StargateV1alpha1().Jobs("dc-west").Get(h.ctx, "done", metav1.GetOptions{}); err == nil {
		t.Error("the Job outlived its TTL")
	}
}

// Finished Jobs do not pile up: without a TTL of their own they go after
// --finished-job-ttl (none when it is 0).
func TestDefaultTTLForFinishedJobs(t *testing.T) {
	j := jobObj("dc-west", "done", "server-001", v1alpha1.OperationReboot)
	j.Status.Phase, j.Status.CompletionTime = v1alpha1.JobFailed, &metav1.Time{Time: t0}
	h := newHarness(t, nil, j)
	if after, err := h.sync("dc-west", "done"); err != nil || after != 0 {
		t.Fatalf("no default TTL: requeue %s, %v (want the Job kept, no requeue)", after, err)
	}
	h.c.opts.FinishedJobTTL = time.Hour
	h.clock.Step(59 * time.Minute)
	if after, err := h.sync("dc-west", "done"); err != nil || after != time.Minute {
		t.Fatalf("before the default TTL: requeue %s, %v", after, err)
	}
	h.clock.Step(time.Minute)
	if _, err := h.sync("dc-west", "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.StargateV1alpha1().Jobs("dc-west").Get(h.ctx, "done", metav1.GetOptions{}); err == nil {
		t.Error("the Job outlived the default TTL")
	}
}

// The controller caches no finished Jobs: a sweep collects those past
// their TTL, and keeps the others.
func TestFinishedJobsAreSweptPastTheirTTL(t *testing.T) {
	old := jobObj("dc-west", "old", "server-001", v1alpha1.OperationReboot)
	old.Status.Phase, old.Status.CompletionTime = v1alpha1.JobSucceeded, &metav1.Time{Time: t0}
	recent := jobObj("dc-west", "recent", "server-002", v1alpha1.OperationReboot)
	recent.Status.Phase, recent.Status.CompletionTime = v1alpha1.JobFailed, &metav1.Time{Time: t0.Add(90 * time.Minute)}
	running := jobObj("dc-west", "running", "server-003", v1alpha1.OperationReboot)
	running.Status.Phase = v1alpha1.JobRunning
	h := newHarness(t, nil, old, recent, running)
	h.c.opts.FinishedJobTTL = time.Hour
	h.clock.Step(2 * time.Hour)
	h.c.collectFinished(h.ctx)
	for name, kept := range map[string]bool{"old": false, "recent": true, "running": true} {
		_, err := h.client.StargateV1alpha1().Jobs("dc-west").Get(h.ctx, name, metav1.GetOptions{})
		if (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
}

// A finished Job not in the cache (the controller caches unfinished Jobs
// only) is read from the API when its key comes up, and collected.
func TestAFinishedJobOutsideTheCacheIsCollected(t *testing.T) {
	h := newHarness(t, nil)
	j := jobObj("dc-west", "done", "server-001", v1alpha1.OperationReboot)
	j.Spec.TTLSecondsAfterFinished = ptr.To[int32](10)
	j.Status.Phase, j.Status.CompletionTime = v1alpha1.JobSucceeded, &metav1.Time{Time: t0}
	if err := h.client.Tracker().Add(j); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(time.Minute)
	if _, err := h.c.sync(h.ctx, "dc-west/done"); err != nil { // no cache wait: it is read from the API
		t.Fatal(err)
	}
	if _, err := h.client.StargateV1alpha1().Jobs("dc-west").Get(h.ctx, "done", metav1.GetOptions{}); err == nil {
		t.Error("a finished Job outside the cache outlived its TTL")
	}
}

func TestWaitingWritesNothingNew(t *testing.T) {
	h := newHarness(t, nil, hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	h.sync("dc-west", "reboot-1")
	writes := len(h.client.Actions())
	h.clock.Step(time.Minute)
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	for _, a := range h.client.Actions()[writes:] {
		if a.GetVerb() == "update" {
			t.Errorf("a Job still waiting for the same reason was written again: %v", a)
		}
	}
}

// events drains the Events recorded so far.
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestFinalizerGoesOnBeforeTheSubmit(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	h.crashAt = FailpointBeforeSubmit
	if _, err := h.sync("dc-west", "reboot-1"); err == nil {
		t.Fatal("the injected crash was not reported")
	}
	if j := h.job("dc-west", "reboot-1"); !slices.Contains(j.Finalizers, v1alpha1.JobCancelFinalizer) || h.dcs["dc-west"].Calls(fake.MethodSubmit) != 0 {
		t.Fatalf("before the submit: finalizers %v, %d submits", j.Finalizers, h.dcs["dc-west"].Calls(fake.MethodSubmit))
	}
	h.crashAt = ""
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || len(j.Finalizers) != 1 {
		t.Errorf("after the restart: %+v, finalizers %v", j.Status, j.Finalizers)
	}
}

func TestCrashAfterSubmitResumesWithoutASecondExecution(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	h.crashAt = FailpointAfterSubmit
	h.sync("dc-west", "reboot-1")
	if j := h.job("dc-west", "reboot-1"); j.Status.DCJobID != "" || dc.Executions("uid-reboot-1") != 1 {
		t.Fatalf("the crash came after the submit, before dcJobID was saved: %+v, %d executions", j.Status, dc.Executions("uid-reboot-1"))
	}
	h.crashAt = ""
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || dc.Executions("uid-reboot-1") != 1 {
		t.Errorf("after the restart: %+v, %d executions", j.Status, dc.Executions("uid-reboot-1"))
	}
}

func TestDeletedJobsAreCancelledAtTheDatacenter(t *testing.T) {
	now := metav1.NewTime(t0)
	// Deleted while Running: cancelled by its dcJobID.
	running := jobObj("dc-west", "running", "server-001", v1alpha1.OperationRepave)
	running.Finalizers, running.DeletionTimestamp = []string{v1alpha1.JobCancelFinalizer}, &now
	running.Status.Phase, running.Status.DCJobID = v1alpha1.JobRunning, "fake-job-1"
	// Deleted after a submit whose dcJobID was never saved: found by its key.
	orphan := jobObj("dc-west", "orphan", "server-002", v1alpha1.OperationReboot)
	orphan.Finalizers, orphan.DeletionTimestamp = []string{v1alpha1.JobCancelFinalizer}, &now
	// Deleted before anything was sent: nothing to cancel.
	unsent := jobObj("dc-west", "unsent", "server-003", v1alpha1.OperationReboot)
	unsent.Finalizers, unsent.DeletionTimestamp = []string{v1alpha1.JobCancelFinalizer}, &now

	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), templateObj("dc-west"),
		hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"),
		hardwareObj("dc-west", "server-003", "aa:bb:cc:dd:ee:03"), running, orphan, unsent)
	dc := h.dcs["dc-west"]
	first, _ := dc.Submit(h.ctx, "uid-running", datacenter.JobRequest{Operation: datacenter.OperationRepave, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}})
	lost, _ := dc.Submit(h.ctx, "uid-orphan", datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:02"}})
	for _, name := range []string{"running", "orphan", "unsent"} {
		if _, err := h.sync("dc-west", name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "unsent" {
			// Left by an older controller (the finalizer, no recorded
			// attempt): "nothing under the key" is final once a whole
			// submit window has passed since it was first asked.
			if j := h.job("dc-west", name); j.Status.Reason != ReasonOutcomeUnknown {
				t.Fatalf("%s within the window: %+v", name, j.Status)
			}
			h.clock.Step(time.Minute + clockSkew)
			if _, err := h.sync("dc-west", name); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		// The write that ended it (Failed, Deleted) dropped the finalizer: it is gone.
		if j, err := h.client.StargateV1alpha1().Jobs("dc-west").Get(h.ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("%s outlived its settled deletion: %+v", name, j.Status)
		}
	}
	for _, id := range []string{first.ID, lost.ID} {
		if j, _ := dc.GetJob(h.ctx, id); j.State != datacenter.JobCancelled {
			t.Errorf("datacenter job %s is %s, want cancelled", id, j.State)
		}
	}
	if n := dc.Calls(fake.MethodSubmit); n != 2 {
		t.Errorf("%d submits, want only the test's 2: finalizing must never submit", n)
	}
}

func TestNoDatacenterActionAfterLosingTheLead(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	h.notLeading = true
	if _, err := h.sync("dc-west", "reboot-1"); err == nil {
		t.Fatal("a replica that lost the lead went on")
	}
	if n := h.dcs["dc-west"].Calls(fake.MethodSubmit); n != 0 {
		t.Errorf("%d submits from a replica that is not the leader", n)
	}
}

func TestEventsAndMetricsOnPhaseChanges(t *testing.T) {
	metrics.Register()
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	succeeded := metrics.JobsTotal.WithLabelValues("dc-west", "reboot", "succeeded")
	before, err := testutil.GetCounterMetricValue(succeeded)
	if err != nil {
		t.Fatal(err)
	}
	h.sync("dc-west", "reboot-1")
	j := h.job("dc-west", "reboot-1")
	h.dcs["dc-west"].Finish(j.Status.DCJobID, datacenter.JobSucceeded, "")
	h.sync("dc-west", "reboot-1")

	got := h.events()
	if len(got) != 2 || !strings.HasPrefix(got[0], "Normal Submitted submitted to dc-west as ") ||
		got[1] != "Normal Completed reboot server-001 completed" {
		t.Errorf("events %q", got)
	}
	if after, _ := testutil.GetCounterMetricValue(succeeded); after != before+1 {
		t.Errorf("stargate_jobs_total{result=succeeded} went from %v to %v", before, after)
	}
}

// settleWindow checks that a Job that gave up waits, sending nothing, until
// its latest submit can no longer start anything at the datacenter, then
// steps the clock past that and syncs it again.
func (h *harness) settleWindow(ns, name string) {
	h.t.Helper()
	j := h.job(ns, name)
	if j.Status.Phase != v1alpha1.JobPending || j.Status.Reason != ReasonOutcomeUnknown || !hasTrue(j.Status.Conditions, ConditionFailureTarget) {
		h.t.Fatalf("a Job that gave up within the submit window must wait, holding its Hardware: %+v", j.Status)
	}
	submits := 0
	for _, dc := range h.dcs {
		submits += dc.Calls(fake.MethodSubmit)
	}
	h.sync(ns, name) // still within the window: nothing is sent
	h.clock.Step(time.Minute + clockSkew)
	if _, err := h.sync(ns, name); err != nil {
		h.t.Fatal(err)
	}
	for _, dc := range h.dcs {
		submits -= dc.Calls(fake.MethodSubmit)
	}
	if submits != 0 {
		h.t.Errorf("a Job that gave up was submitted %d more times", -submits)
	}
}
