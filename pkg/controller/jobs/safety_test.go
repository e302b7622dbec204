package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
)

// front stands between the controller and a fake datacenter and can lose
// the answer to submits the datacenter carried out, answer them unreadably,
// or keep jobs running through a cancel; it records every submitted request.
type front struct {
	*fake.Client
	mu sync.Mutex
	// loseAnswers: the next submits are carried out, and answered 500.
	loseAnswers int
	// garble: the next submits are carried out, and answered with a 2xx body
	// that cannot be decoded.
	garble int
	// ignoreCancels: the next cancels are acknowledged but the job runs on.
	ignoreCancels int
	requests      []datacenter.JobRequest
}

func (f *front) Submit(ctx context.Context, key string, req datacenter.JobRequest) (*datacenter.Job, error) {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	lose, garble := f.loseAnswers > 0, f.garble > 0 && f.loseAnswers == 0
	if lose {
		f.loseAnswers--
	} else if garble {
		f.garble--
	}
	f.mu.Unlock()
	job, err := f.Client.Submit(ctx, key, req)
	switch {
	case err != nil:
		return nil, err
	case lose:
		return nil, fake.Transient()
	case garble:
		return nil, &datacenter.Error{StatusCode: http.StatusAccepted, Op: "POST /v1/jobs", Message: "undecodable answer: unexpected EOF"}
	}
	return job, nil
}

func (f *front) Cancel(ctx context.Context, id string) (*datacenter.Job, error) {
	f.mu.Lock()
	ignore := f.ignoreCancels > 0
	if ignore {
		f.ignoreCancels--
	}
	f.mu.Unlock()
	if ignore {
		return f.Client.GetJob(ctx, id)
	}
	return f.Client.Cancel(ctx, id)
}

// withFront puts a front before the harness's fake datacenter name.
func (h *harness) withFront(name string) *front {
	f := &front{Client: h.dcs[name]}
	h.fronts = map[string]*front{name: f}
	return f
}

// A submit was carried out and its answer lost; every re-submit then fails
// until the backoff limit. The Job must not end Failed (freeing its
// Hardware) while that first repave runs: it adopts it and ends as the
// datacenter says.
func TestLostAnswerThenBackoffLimitAdoptsTheRunningJob(t *testing.T) {
	job := jobObj("dc-west", "repave-1", "server-001", v1alpha1.OperationRepave)
	job.Spec.BackoffLimit = ptr.To[int32](1)
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		templateObj("dc-west"), job)
	f := h.withFront("dc-west")
	f.loseAnswers = 1

	if _, err := h.sync("dc-west", "repave-1"); err == nil {
		t.Fatal("a lost answer must be retried")
	}
	f.FailNext(fake.MethodSubmit, fake.Transient(), fake.Transient())
	for range 2 {
		h.sync("dc-west", "repave-1")
		if j := h.job("dc-west", "repave-1"); j.Status.Phase == v1alpha1.JobFailed {
			t.Fatalf("the Job failed while its first submit runs at the datacenter: %+v", j.Status)
		}
	}
	j := h.job("dc-west", "repave-1")
	if j.Status.Phase != v1alpha1.JobRunning || j.Status.DCJobID != "fake-job-1" || j.Status.Reason != ReasonAdopted {
		t.Fatalf("after the backoff limit with a job running under its key: %+v", j.Status)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.ActiveJob != "repave-1" {
		t.Fatalf("the Hardware was freed while its repave runs: %+v", hw.Status)
	}
	if n := f.Executions("uid-repave-1"); n != 1 {
		t.Fatalf("%d executions, want 1", n)
	}
	f.Finish("fake-job-1", datacenter.JobSucceeded, "")
	h.sync("dc-west", "repave-1")
	if j := h.job("dc-west", "repave-1"); j.Status.Phase != v1alpha1.JobSucceeded {
		t.Errorf("the adopted job succeeded; the Job: %+v", j.Status)
	}
}

// A Job cancelled (spec.cancel) while its submit's answer is lost must cancel
// the job found under its key and end only once the datacenter says it
// stopped; until then it stays Running and holds its Hardware.
func TestCancelAfterALostAnswerStopsTheDatacenterJobFirst(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	f := h.withFront("dc-west")
	f.loseAnswers, f.ignoreCancels = 1, 1
	h.sync("dc-west", "reboot-1")
	h.cancel("dc-west", "reboot-1")

	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	j := h.job("dc-west", "reboot-1")
	dcJob, _ := f.GetJob(h.ctx, "fake-job-1")
	if j.Status.Phase != v1alpha1.JobRunning || j.Status.Reason != ReasonCancelling || dcJob.State != datacenter.JobRunning {
		t.Fatalf("asked to stop, still running there: Job %+v, datacenter job %s", j.Status, dcJob.State)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.ActiveJob != "reboot-1" {
		t.Fatalf("the Hardware was freed while its job runs: %+v", hw.Status)
	}
	h.sync("dc-west", "reboot-1")
	dcJob, _ = f.GetJob(h.ctx, "fake-job-1")
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonCancelledByUser ||
		dcJob.State != datacenter.JobCancelled {
		t.Fatalf("once stopped: Job %+v, datacenter job %s", j.Status, dcJob.State)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.ActiveJob != "" {
		t.Errorf("the Hardware is still held after the Job ended: %+v", hw.Status)
	}
}

// If the datacenter cannot be asked what runs under the key, the Job waits,
// with a reason, and keeps its Hardware.
func TestAnUnknownOutcomeWaitsInsteadOfEnding(t *testing.T) {
	job := jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot)
	job.Spec.BackoffLimit = ptr.To[int32](0)
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), job)
	f := h.withFront("dc-west")
	f.loseAnswers = 1
	f.FailNext(fake.MethodFindJob, fake.Transient(), fake.Transient())
	for range 2 {
		if _, err := h.sync("dc-west", "reboot-1"); err != nil {
			t.Fatal(err)
		}
		j := h.job("dc-west", "reboot-1")
		if j.Status.Phase != v1alpha1.JobPending || j.Status.Reason != ReasonOutcomeUnknown {
			t.Fatalf("the datacenter cannot be asked: %+v", j.Status)
		}
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.ActiveJob != "reboot-1" {
		t.Fatalf("the Hardware was freed with the outcome unknown: %+v", hw.Status)
	}
	h.sync("dc-west", "reboot-1")
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || j.Status.DCJobID != "fake-job-1" {
		t.Errorf("once the datacenter answered: %+v", j.Status)
	}
}

// A 4xx to a re-submit after a lost answer, and a 2xx whose body cannot be
// read, are unknown outcomes too: the job found under the key is adopted.
func TestRefusalsAndUnreadableAnswersAdoptWhatRuns(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"),
		hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"),
		jobObj("dc-west", "refused", "server-001", v1alpha1.OperationReboot), jobObj("dc-west", "garbled", "server-002", v1alpha1.OperationReboot))
	f := h.withFront("dc-west")
	f.loseAnswers = 1
	h.sync("dc-west", "refused")
	f.FailNext(fake.MethodSubmit, &datacenter.Error{StatusCode: http.StatusConflict, Op: "fake", Message: "key reused with another body"})
	h.sync("dc-west", "refused")
	if j := h.job("dc-west", "refused"); j.Status.Phase != v1alpha1.JobRunning || j.Status.DCJobID != "fake-job-1" {
		t.Errorf("a 4xx after a lost answer: %+v", j.Status)
	}
	f.garble = 1
	h.sync("dc-west", "garbled")
	if j := h.job("dc-west", "garbled"); j.Status.Phase != v1alpha1.JobRunning || j.Status.DCJobID != "fake-job-2" {
		t.Errorf("an unreadable 2xx: %+v", j.Status)
	}
}

// Every attempt sends the request fixed at the first, whatever happened to
// the Hardware since; the Template's user data is never stored, and if it
// changed the first request is not replaced by another under the same key.
func TestEveryAttemptSendsTheFirstRequest(t *testing.T) {
	tmpl := templateObj("dc-west")
	tmpl.Spec.CloudInit = &v1alpha1.CloudInit{UserData: "#cloud-config\npassword: hunter2\n"}
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"), tmpl,
		jobObj("dc-west", "repave-1", "server-001", v1alpha1.OperationRepave), jobObj("dc-west", "repave-2", "server-002", v1alpha1.OperationRepave))
	f := h.withFront("dc-west")
	f.FailNext(fake.MethodSubmit, fake.Transient())
	h.sync("dc-west", "repave-1")

	hw := h.hardware("dc-west", "server-001")
	hw.Spec.IPv4 = "10.0.1.99"
	if _, err := h.client.StargateV1alpha1().Hardwares("dc-west").Update(h.ctx, hw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("dc-west", "repave-1")
	if len(f.requests) != 2 || !equalJSON(f.requests[0], f.requests[1]) || f.requests[0].UserData != tmpl.Spec.CloudInit.UserData {
		t.Fatalf("the attempts sent different requests: %+v", f.requests)
	}
	j := h.job("dc-west", "repave-1")
	status, _ := json.Marshal(j.Status)
	if strings.Contains(string(status), "hunter2") || j.Status.Submission == nil || j.Status.Submission.UserDataSHA256 == "" {
		t.Fatalf("status must hold the user data's digest, not the data: %s", status)
	}

	// repave-2's first attempt fails before anything starts; then the
	// Template's user data changes: nothing else is sent under its key.
	f.FailNext(fake.MethodSubmit, fake.Transient())
	h.sync("dc-west", "repave-2")
	live, _ := h.client.StargateV1alpha1().Templates("dc-west").Get(h.ctx, tmpl.Name, metav1.GetOptions{})
	live.Spec.CloudInit.UserData = "#cloud-config\npassword: changed\n"
	if _, err := h.client.StargateV1alpha1().Templates("dc-west").Update(h.ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		c, _ := h.c.templates.Templates("dc-west").Get(tmpl.Name)
		return c.Spec.CloudInit.UserData == live.Spec.CloudInit.UserData
	})
	submits := len(f.requests)
	h.sync("dc-west", "repave-2")
	h.settleWindow("dc-west", "repave-2")
	if j := h.job("dc-west", "repave-2"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonTemplateChanged || len(f.requests) != submits {
		t.Errorf("after the user data changed: %+v, %d more submits", j.Status, len(f.requests)-submits)
	}
}

// maxConcurrentJobs counts a Job whose submit may have started, whatever the
// submit answered.
func TestASubmitWithALostAnswerKeepsItsSlot(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west", func(dc *v1alpha1.Datacenter) { dc.Spec.MaxConcurrentJobs = ptr.To[int32](1) }),
		hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"),
		jobObj("dc-west", "first", "server-001", v1alpha1.OperationReboot), jobObj("dc-west", "second", "server-002", v1alpha1.OperationReboot))
	f := h.withFront("dc-west")
	f.loseAnswers = 1
	h.sync("dc-west", "first")
	h.waitForCache("dc-west", "first")
	h.sync("dc-west", "second")
	if j := h.job("dc-west", "second"); j.Status.Reason != ReasonDatacenterBusy || f.Executions("uid-second") != 0 {
		t.Fatalf("a second Job started beside one whose answer was lost (max 1): %+v", j.Status)
	}
}

// A Running Job whose Datacenter is gone stays Running; one never sent can
// still be cancelled.
func TestRunningNeverGoesBackToPending(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"),
		hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), hardwareObj("dc-west", "server-002", "aa:bb:cc:dd:ee:02"),
		jobObj("dc-west", "running", "server-001", v1alpha1.OperationReboot), jobObj("dc-west", "unsent", "server-002", v1alpha1.OperationReboot))
	h.sync("dc-west", "running")
	if err := h.client.StargateV1alpha1().Datacenters().Delete(h.ctx, "dc-west", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := h.c.dcs.Get("dc-west"); return err != nil })
	h.cancel("dc-west", "running")
	if _, err := h.sync("dc-west", "running"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "running"); j.Status.Phase != v1alpha1.JobRunning || j.Status.Reason != ReasonDatacenterNotFound {
		t.Errorf("a Running Job without its Datacenter: %+v", j.Status)
	}
	h.cancel("dc-west", "unsent")
	h.sync("dc-west", "unsent")
	if j := h.job("dc-west", "unsent"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonCancelledByUser {
		t.Errorf("a Job never sent, cancelled without its Datacenter: %+v", j.Status)
	}
}

// A missing credentials file is a waiting reason naming the file; a refusal
// (401) names it too; neither fails the Job, and it starts once the file is right.
func TestCredentialsProblemsMakeJobsWait(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	file := "/etc/stargate/datacenters/dc-west"
	dc.FailNext(fake.MethodSubmit, &datacenter.CredentialsError{File: file, Missing: true, Err: errors.New("no such file")},
		&datacenter.CredentialsError{File: file, Err: &datacenter.Error{StatusCode: http.StatusUnauthorized, Op: "fake", Message: "bad token"}})
	for _, want := range []string{ReasonCredentialsMissing, ReasonCredentialsRejected} {
		if _, err := h.sync("dc-west", "reboot-1"); err != nil {
			t.Fatal(err)
		}
		j := h.job("dc-west", "reboot-1")
		if j.Status.Phase != v1alpha1.JobPending || j.Status.Reason != want || !strings.Contains(j.Status.Message, file) {
			t.Fatalf("want %s naming %s: %+v", want, file, j.Status)
		}
	}
	h.sync("dc-west", "reboot-1")
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || j.Status.Attempts != 1 {
		t.Errorf("once the credentials work: %+v", j.Status)
	}
}

// A Job's result is written to its Hardware only while the Job holds it.
func TestAResultNeverOverwritesANewerHolder(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "old", "server-001", v1alpha1.OperationReboot))
	h.sync("dc-west", "old")
	h.dcs["dc-west"].Finish("fake-job-1", datacenter.JobSucceeded, "")
	// Meanwhile the Hardware went to another Job (another replica finished
	// "old" and started "new"; this one's cache is behind).
	hw := h.hardware("dc-west", "server-001")
	hw.Status.State = v1alpha1.HardwareStateProvisioning
	if _, err := h.client.StargateV1alpha1().Hardwares("dc-west").UpdateStatus(h.ctx, hw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.setLock("dc-west", "server-001", "new")
	h.sync("dc-west", "old")
	if hw := h.hardware("dc-west", "server-001"); hw.Status.State != v1alpha1.HardwareStateProvisioning {
		t.Errorf("the old Job's result overwrote the new holder's state: %+v", hw.Status)
	}
}

// Only changes that Jobs wait on wake them.
func TestDatacenterWritesThatChangeNothingWakeNobody(t *testing.T) {
	base := datacenterObj("dc-west")
	base.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
	probed := base.DeepCopy()
	probed.Status.LastProbeTime, probed.Status.ActiveJobs = &metav1.Time{Time: t0}, 3
	paused := base.DeepCopy()
	paused.Spec.Paused = true
	down := base.DeepCopy()
	down.Status.Conditions[0].Status = metav1.ConditionFalse
	for _, c := range []struct {
		name string
		dc   *v1alpha1.Datacenter
		want bool
	}{{"probe time and counts", probed, false}, {"paused", paused, true}, {"Ready flipped", down, true}} {
		if got := datacenterChanged(base, c.dc); got != c.want {
			t.Errorf("%s: wakes Jobs %v, want %v", c.name, got, c.want)
		}
	}
}

func equalJSON(a, b interface{}) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// setLock makes Job holder the Hardware's lock holder, as the server would.
func (h *harness) setLock(ns, hwName, holder string) {
	h.t.Helper()
	h.server.mu.Lock()
	defer h.server.mu.Unlock()
	hw, err := h.server.hardware(ns, hwName)
	if err != nil {
		h.t.Fatal(err)
	}
	hw.Status.ActiveJob = holder
	if err := h.server.store(hardwaresResource, hw); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) cancel(ns, name string) {
	h.t.Helper()
	j := h.job(ns, name)
	j.Spec.Cancel = true
	if _, err := h.client.StargateV1alpha1().Jobs(ns).Update(h.ctx, j, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// A submit that timed out may still be on its way: "nothing under the key"
// is final only once the request's Not-After deadline (carried by the
// submit) has passed. A request that lands before then is adopted.
func TestATimedOutSubmitMayStillLand(t *testing.T) {
	job := jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot)
	job.Spec.BackoffLimit = ptr.To[int32](0)
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), job)
	f := &lateFront{Client: h.dcs["dc-west"]}
	h.fronts = map[string]*front{}
	h.late = f
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		t.Fatal(err)
	}
	j := h.job("dc-west", "reboot-1")
	if want := j.Status.LastAttemptTime.Add(time.Minute); !f.deadline.Equal(want) {
		t.Errorf("the submit carried the deadline %s, want lastAttemptTime + the window = %s", f.deadline, want)
	}
	if j.Status.Phase != v1alpha1.JobPending || j.Status.Reason != ReasonOutcomeUnknown {
		t.Fatalf("a timed-out submit, nothing under the key yet: %+v", j.Status)
	}
	h.clock.Step(30 * time.Second)
	if _, err := f.Client.Submit(h.ctx, string(j.UID), f.req); err != nil { // it lands, late but in time
		t.Fatal(err)
	}
	h.sync("dc-west", "reboot-1")
	if j := h.job("dc-west", "reboot-1"); j.Status.Phase != v1alpha1.JobRunning || j.Status.DCJobID == "" {
		t.Errorf("the late submit's job must be adopted: %+v", j.Status)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.ActiveJob != "reboot-1" {
		t.Errorf("the Hardware was freed: %+v", hw.Status)
	}
}

// lateFront times out every submit without delivering it, keeping the
// request (and its deadline) for the test to deliver late.
type lateFront struct {
	*fake.Client
	req      datacenter.JobRequest
	deadline time.Time
}

func (f *lateFront) Submit(ctx context.Context, key string, req datacenter.JobRequest) (*datacenter.Job, error) {
	f.req = req
	f.deadline, _ = ctx.Deadline()
	return nil, &datacenter.Error{Op: "POST /v1/jobs", Message: "context deadline exceeded (Client.Timeout exceeded)"}
}

// A Job with the cancel finalizer but no fixed request (left by an older
// controller, which put the finalizer on before submitting) is asked about
// by key, then sent with a request fixed as usual; nothing panics.
func TestALegacyJobIsAskedAboutBeforeItIsSent(t *testing.T) {
	legacy := jobObj("dc-west", "legacy", "server-001", v1alpha1.OperationReboot)
	legacy.Finalizers = []string{v1alpha1.JobCancelFinalizer}
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"), legacy)
	dc := h.dcs["dc-west"]
	if _, err := h.sync("dc-west", "legacy"); err != nil {
		t.Fatal(err)
	}
	// Its old submit carried no deadline: the answer is final only a whole
	// submit window after it was first asked.
	if j := h.job("dc-west", "legacy"); j.Status.Reason != ReasonOutcomeUnknown || dc.Executions("uid-legacy") != 0 {
		t.Fatalf("a legacy Job within the window: %+v", j.Status)
	}
	h.clock.Step(time.Minute + clockSkew)
	if _, err := h.sync("dc-west", "legacy"); err != nil {
		t.Fatal(err)
	}
	j := h.job("dc-west", "legacy")
	if j.Status.Phase != v1alpha1.JobRunning || j.Status.Submission == nil || dc.Calls(fake.MethodFindJob) != 2 || dc.Executions("uid-legacy") != 1 {
		t.Errorf("a legacy Job: %+v, %d lookups, %d executions", j.Status, dc.Calls(fake.MethodFindJob), dc.Executions("uid-legacy"))
	}
}

// The way out when a datacenter is gone for good: label the Job
// stargate.io/abandon=true. It ends without a word to the datacenter, and its
// Hardware says the machine's state is unknown.
func TestAnAbandonedJobEndsWithoutTheDatacenter(t *testing.T) {
	h := newHarness(t, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "stuck", "server-001", v1alpha1.OperationReboot))
	dc := h.dcs["dc-west"]
	dc.FailNext(fake.MethodSubmit, fake.Transient())
	dc.FailNext(fake.MethodFindJob, fake.Transient(), fake.Transient())
	h.sync("dc-west", "stuck")
	j := h.job("dc-west", "stuck")
	j.Labels = map[string]string{v1alpha1.JobAbandonLabel: "true"}
	if _, err := h.client.StargateV1alpha1().Jobs("dc-west").Update(h.ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	calls := dc.Calls(fake.MethodSubmit) + dc.Calls(fake.MethodFindJob) + dc.Calls(fake.MethodCancel)
	if _, err := h.sync("dc-west", "stuck"); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", "stuck"); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonAbandoned {
		t.Errorf("abandoned: %+v", j.Status)
	}
	if n := dc.Calls(fake.MethodSubmit) + dc.Calls(fake.MethodFindJob) + dc.Calls(fake.MethodCancel) - calls; n != 0 {
		t.Errorf("%d datacenter calls for an abandoned Job", n)
	}
	if hw := h.hardware("dc-west", "server-001"); hw.Status.State != v1alpha1.HardwareStateUnknown || !hasTrue(hw.Status.Conditions, ConditionFailed) {
		t.Errorf("the Hardware of an abandoned Job: %+v", hw.Status)
	}
}
