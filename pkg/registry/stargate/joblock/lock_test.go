package joblock

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
	"stargate.io/stargate/pkg/registry/stargate/datacenter"
	"stargate.io/stargate/pkg/registry/stargate/hardware"
	"stargate.io/stargate/pkg/registry/stargate/job"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
	"stargate.io/stargate/pkg/registry/stargate/template"
)

const ns = "dc-west"

type env struct {
	ctx   context.Context
	clock *testingclock.FakePassiveClock
	hw    *hardware.Storage
	tmpl  *registry.REST
	jobs  *job.Storage
	dcs   *datacenter.Storage
}

func newEnv(t *testing.T) *env { return newEnvWith(t) }

// newEnvWith is newEnv with more hooks on the Job store, installed before the lock's.
func newEnvWith(t *testing.T, jobInstalls ...func(*genericregistry.Store) error) *env {
	t.Helper()
	scheme := registrytest.Scheme()
	opts := registrytest.RESTOptionsGetter(t, scheme)
	hw, err := hardware.NewStorage(scheme, opts)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.NewREST(scheme, opts)
	if err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakePassiveClock(time.Now())
	lock := New(hw.Status, tmpl, clk, DefaultGrace)
	jobs, err := job.NewStorage(scheme, opts, append(jobInstalls, lock.Install)...)
	if err != nil {
		t.Fatal(err)
	}
	dcs, err := datacenter.NewStorage(scheme, opts)
	if err != nil {
		t.Fatal(err)
	}
	hw.Hardware.DeleteGuard, tmpl.DeleteGuard = lock.HardwareDeletable, lock.TemplateDeletable
	dcs.Datacenter.DeleteGuard, dcs.Datacenter.BeginUpdate = lock.DatacenterDeletable, lock.DatacenterUpdatable
	t.Cleanup(func() {
		hw.Hardware.DestroyFunc()
		tmpl.DestroyFunc()
		jobs.Job.DestroyFunc()
		dcs.Datacenter.DestroyFunc()
	})
	e := &env{ctx: genericapirequest.WithNamespace(context.Background(), ns), clock: clk, hw: hw, tmpl: tmpl, jobs: jobs, dcs: dcs}
	for i, name := range []string{"server-001", "server-002"} {
		if _, err := hw.Hardware.Create(e.ctx, &stargate.Hardware{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       stargate.HardwareSpec{MAC: fmt.Sprintf("aa:bb:cc:dd:ee:0%d", i+1), IPv4: fmt.Sprintf("10.0.1.%d", i+5)},
		}, nil, &metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tmpl.Create(e.ctx, &stargate.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: ns},
		Spec:       stargate.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os.img"},
	}, nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func newJob(name, hw string) *stargate.Job {
	return &stargate.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: stargate.JobSpec{HardwareRef: stargate.LocalObjectReference{Name: hw}, Operation: stargate.OperationRepave,
			TemplateRef: &stargate.LocalObjectReference{Name: "os-2-0-0"}, BackoffLimit: ptr.To[int32](3)},
	}
}

func (e *env) create(j *stargate.Job, validate rest.ValidateObjectFunc, dryRun ...string) error {
	_, err := e.jobs.Job.Create(e.ctx, j, validate, &metav1.CreateOptions{DryRun: dryRun})
	return err
}

func (e *env) hardware(t *testing.T, name string) *stargate.Hardware {
	t.Helper()
	obj, err := e.hw.Hardware.Get(e.ctx, name, &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*stargate.Hardware)
}

func (e *env) setPhase(t *testing.T, name string, phase stargate.JobPhase) {
	t.Helper()
	_, _, err := e.jobs.Status.Update(e.ctx, name, rest.DefaultUpdatedObjectInfo(nil,
		func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
			j := old.(*stargate.Job).DeepCopy()
			j.Status.Phase = phase
			return j, nil
		}), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// forceLock writes a lock as a crashed server would have left it.
func (e *env) forceLock(t *testing.T, hw, holder string, takenAt time.Time) {
	t.Helper()
	_, _, err := e.hw.Status.Update(e.ctx, hw, rest.DefaultUpdatedObjectInfo(nil,
		func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
			h := old.(*stargate.Hardware).DeepCopy()
			h.Status.ActiveJob = holder
			setReserved(h, metav1.ConditionTrue, "JobActive", "test", takenAt)
			return h, nil
		}), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func wantConflictNaming(t *testing.T, err error, holder string) {
	t.Helper()
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), holder) {
		t.Fatalf("got %v, want 409 naming %s", err, holder)
	}
}

func TestReferencesMustExist(t *testing.T) {
	e := newEnv(t)
	err := e.create(newJob("j1", "server-404"), nil)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.hardwareRef.name") || !strings.Contains(err.Error(), "server-404") {
		t.Errorf("missing hardware: %v", err)
	}
	j := newJob("j2", "server-001")
	j.Spec.TemplateRef.Name = "os-9"
	err = e.create(j, nil)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.templateRef.name") {
		t.Errorf("missing template: %v", err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "" {
		t.Errorf("a refused Job locked the Hardware: %q", hw.Status.ActiveJob)
	}
}

func TestOneUnfinishedJobPerHardware(t *testing.T) {
	e := newEnv(t)
	if err := e.create(newJob("first", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	hw := e.hardware(t, "server-001")
	if c := meta.FindStatusCondition(hw.Status.Conditions, ReservedCondition); hw.Status.ActiveJob != "first" || c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("lock not taken: %+v", hw.Status)
	}
	wantConflictNaming(t, e.create(newJob("second", "server-001"), nil), "first")
	if err := e.create(newJob("other", "server-002"), nil); err != nil {
		t.Errorf("another Hardware is not busy: %v", err)
	}

	e.setPhase(t, "first", stargate.JobRunning)
	wantConflictNaming(t, e.create(newJob("second", "server-001"), nil), "first")
	e.setPhase(t, "first", stargate.JobSucceeded)
	hw = e.hardware(t, "server-001")
	if hw.Status.ActiveJob != "" || hw.Status.LastJob != "first" {
		t.Errorf("after the Job finished: %+v", hw.Status)
	}
	// The result outlives the Job (its TTL deletes it).
	if r := hw.Status.LastJobResult; r == nil || r.Name != "first" || r.Phase != stargate.JobSucceeded || r.Operation != newJob("x", "y").Spec.Operation {
		t.Errorf("the last result on the Hardware: %+v", r)
	}
	if err := e.create(newJob("second", "server-001"), nil); err != nil {
		t.Fatalf("after release: %v", err)
	}

	// Deleting an unfinished Job releases it too.
	if _, _, err := e.jobs.Job.Delete(e.ctx, "second", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "" || hw.Status.LastJob != "first" {
		t.Errorf("after deleting the holder: %+v", hw.Status)
	}
}

func TestFailedCreateReleasesOnlyItsOwnLock(t *testing.T) {
	e := newEnv(t)
	denied := func(context.Context, runtime.Object) error {
		return apierrors.NewForbidden(stargate.Resource("jobs"), "x", nil)
	}
	if err := e.create(newJob("denied", "server-001"), denied); !apierrors.IsForbidden(err) {
		t.Fatalf("admission: %v", err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "" {
		t.Fatalf("a Job refused by admission kept the lock: %q", hw.Status.ActiveJob)
	}

	if err := e.create(newJob("a", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.create(newJob("a", "server-001"), nil); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("same name again: %v", err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "a" {
		t.Errorf("a failed duplicate create released the existing Job's lock: %q", hw.Status.ActiveJob)
	}
}

func TestDryRunTakesNoLock(t *testing.T) {
	e := newEnv(t)
	if err := e.create(newJob("dry", "server-001"), nil, metav1.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "" {
		t.Errorf("dry run locked: %q", hw.Status.ActiveJob)
	}
	if err := e.create(newJob("real", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	wantConflictNaming(t, e.create(newJob("dry2", "server-001"), nil, metav1.DryRunAll), "real")
}

func TestStaleLocksAreRepaired(t *testing.T) {
	e := newEnv(t)
	// A lock whose Job was never stored (crash between the two steps), taken just now: respected.
	e.forceLock(t, "server-001", "ghost", e.clock.Now())
	wantConflictNaming(t, e.create(newJob("j1", "server-001"), nil), "ghost")
	// Past the grace period it is repaired by the next request.
	e.clock.SetTime(e.clock.Now().Add(DefaultGrace + time.Second))
	if err := e.create(newJob("j1", "server-001"), nil); err != nil {
		t.Fatalf("stale lock of a missing Job: %v", err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "j1" {
		t.Errorf("lock now held by %q", hw.Status.ActiveJob)
	}

	// A lock held by a finished Job whose release was lost: repaired at once.
	e.setPhase(t, "j1", stargate.JobFailed)
	e.forceLock(t, "server-001", "j1", e.clock.Now())
	if err := e.create(newJob("j2", "server-001"), nil); err != nil {
		t.Fatalf("stale lock of a finished Job: %v", err)
	}
}

func TestDeletingHardwareTakesNoNewJob(t *testing.T) {
	e := newEnv(t)
	hw := e.hardware(t, "server-002").DeepCopy()
	hw.Finalizers = []string{"stargate.io/test-hold"}
	if _, _, err := e.hw.Hardware.Update(e.ctx, hw.Name, rest.DefaultUpdatedObjectInfo(hw), nil, nil, false, &metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.hw.Hardware.Delete(e.ctx, hw.Name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.create(newJob("late", "server-002"), nil); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "being deleted") {
		t.Errorf("got %v, want 409 for a Hardware being deleted", err)
	}
}

// TestConcurrentCreates: 50 concurrent Jobs for one Hardware, exactly one wins.
func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t)
	const n = 50
	won, conflicts := registrytest.Race(t, n, apierrors.IsConflict, func(i int) error {
		return e.create(newJob(fmt.Sprintf("race-%02d", i), "server-001"), nil)
	})
	list, err := e.jobs.Job.List(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(conflicts) != n-1 || len(list.(*stargate.JobList).Items) != 1 {
		t.Errorf("%d won, %d conflicts, %d stored; want 1, %d, 1", won, len(conflicts), len(list.(*stargate.JobList).Items), n-1)
	}
}

func TestDeleteProtection(t *testing.T) {
	e := newEnv(t)
	if err := e.create(newJob("busy", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.hw.Hardware.Delete(e.ctx, "server-001", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
	wantConflictNaming(t, err, "busy")
	_, _, err = e.tmpl.Delete(e.ctx, "os-2-0-0", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
	wantConflictNaming(t, err, "busy")
	if _, err := e.hw.Hardware.Get(e.ctx, "server-001", &metav1.GetOptions{}); err != nil {
		t.Fatalf("a refused delete lost the Hardware: %v", err)
	}

	// Idle Hardware goes as usual.
	if _, _, err := e.hw.Hardware.Delete(e.ctx, "server-002", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Errorf("idle hardware: %v", err)
	}
	e.setPhase(t, "busy", stargate.JobSucceeded)
	if _, _, err := e.tmpl.Delete(e.ctx, "os-2-0-0", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Errorf("template after its Job finished: %v", err)
	}
	if _, _, err := e.hw.Hardware.Delete(e.ctx, "server-001", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Errorf("hardware after its Job finished: %v", err)
	}
}

// setStatus writes a Job's status as the controller does.
func (e *env) setStatus(t *testing.T, name string, mutate func(*stargate.JobStatus)) {
	t.Helper()
	_, _, err := e.jobs.Status.Update(e.ctx, name, rest.DefaultUpdatedObjectInfo(nil,
		func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
			j := old.(*stargate.Job).DeepCopy()
			mutate(&j.Status)
			return j, nil
		}), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// The server writes what a Job means for its Hardware in the hooks of the
// Job's own status writes: busy while it runs, its end state with the lock's
// release, and nothing to a Hardware the Job does not hold.
func TestHardwareFollowsItsJob(t *testing.T) {
	e := newEnv(t)
	sent := &stargate.JobSubmission{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5"}
	if err := e.create(newJob("repave-1", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	e.setStatus(t, "repave-1", func(s *stargate.JobStatus) { s.Submission = sent })
	if hw := e.hardware(t, "server-001"); hw.Status.State == stargate.HardwareStateProvisioning {
		t.Fatalf("a Job not yet running at its datacenter made the Hardware %s", hw.Status.State)
	}
	e.setStatus(t, "repave-1", func(s *stargate.JobStatus) { s.Phase, s.DCJobID = stargate.JobRunning, "dc-1" })
	if hw := e.hardware(t, "server-001"); hw.Status.State != stargate.HardwareStateProvisioning || hw.Status.ActiveJob != "repave-1" {
		t.Fatalf("running repave: Hardware %s held by %q, want provisioning held by repave-1", hw.Status.State, hw.Status.ActiveJob)
	}
	e.setStatus(t, "repave-1", func(s *stargate.JobStatus) {
		s.Phase, s.CurrentOS, s.Reason = stargate.JobSucceeded, "2.0.0", "Completed"
		s.CompletionTime = &metav1.Time{Time: e.clock.Now()}
	})
	hw := e.hardware(t, "server-001")
	if hw.Status.State != stargate.HardwareStateReady || hw.Status.CurrentOS != "2.0.0" || hw.Status.ActiveJob != "" ||
		hw.Status.LastJobResult == nil || hw.Status.LastJobResult.Phase != stargate.JobSucceeded {
		t.Fatalf("succeeded repave: %+v", hw.Status)
	}

	// A Job that failed at its datacenter leaves the machine in error.
	reboot := newJob("reboot-1", "server-001")
	reboot.Spec.Operation, reboot.Spec.TemplateRef = stargate.OperationReboot, nil
	if err := e.create(reboot, nil); err != nil {
		t.Fatal(err)
	}
	e.setStatus(t, "reboot-1", func(s *stargate.JobStatus) { s.Submission, s.Phase, s.DCJobID = sent, stargate.JobRunning, "dc-2" })
	if hw := e.hardware(t, "server-001"); hw.Status.State != stargate.HardwareStateRebooting {
		t.Fatalf("running reboot: Hardware %s", hw.Status.State)
	}
	e.setStatus(t, "reboot-1", func(s *stargate.JobStatus) {
		s.Phase, s.Reason, s.Message = stargate.JobFailed, "DatacenterJobFailed", "BMC timeout"
	})
	hw = e.hardware(t, "server-001")
	if c := meta.FindStatusCondition(hw.Status.Conditions, stargate.HardwareConditionFailed); hw.Status.State != stargate.HardwareStateError ||
		hw.Status.CurrentOS != "2.0.0" || c == nil || !strings.Contains(c.Message, "BMC timeout") {
		t.Fatalf("failed reboot: %+v", hw.Status)
	}

	// One abandoned after it may have reached its datacenter: unknown. One
	// that never reached it changes nothing.
	for i, tc := range []struct {
		submission *stargate.JobSubmission
		want       stargate.HardwareState
	}{{sent, stargate.HardwareStateUnknown}, {nil, stargate.HardwareStateUnknown /* unchanged from before */}} {
		name := fmt.Sprintf("abandoned-%d", i)
		if err := e.create(newJob(name, "server-001"), nil); err != nil {
			t.Fatal(err)
		}
		e.setStatus(t, name, func(s *stargate.JobStatus) {
			s.Submission, s.Phase, s.Reason, s.Message = tc.submission, stargate.JobFailed, stargate.JobReasonAbandoned, "abandoned"
		})
		if hw := e.hardware(t, "server-001"); hw.Status.State != tc.want || hw.Status.ActiveJob != "" {
			t.Fatalf("%s: Hardware %s held by %q, want %s and free", name, hw.Status.State, hw.Status.ActiveJob, tc.want)
		}
	}

	// A running Job that no longer holds its Hardware (its lock was taken
	// over) does not touch it.
	if err := e.create(newJob("old", "server-002"), nil); err != nil {
		t.Fatal(err)
	}
	e.forceLock(t, "server-002", "new", e.clock.Now())
	e.setStatus(t, "old", func(s *stargate.JobStatus) { s.Submission, s.Phase, s.DCJobID = sent, stargate.JobRunning, "dc-3" })
	if hw := e.hardware(t, "server-002"); hw.Status.State == stargate.HardwareStateProvisioning {
		t.Fatalf("a Job that does not hold the Hardware set it %s", hw.Status.State)
	}
}

// A finished Job whose release was lost (a crash right after its last
// write) still gets its result onto the Hardware: the next Job's create
// repairs the lock with it.
func TestARepairedLockKeepsTheResult(t *testing.T) {
	e := newEnv(t)
	if err := e.create(newJob("j1", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	e.setStatus(t, "j1", func(s *stargate.JobStatus) {
		s.Submission = &stargate.JobSubmission{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5"}
		s.Phase, s.DCJobID = stargate.JobRunning, "dc-1"
	})
	e.setStatus(t, "j1", func(s *stargate.JobStatus) { s.Phase, s.CurrentOS = stargate.JobSucceeded, "3.0.0" })
	// The release is undone, as if the server had died before it.
	e.forceLock(t, "server-001", "j1", e.clock.Now())
	_, _, err := e.hw.Status.Update(e.ctx, "server-001", rest.DefaultUpdatedObjectInfo(nil,
		func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
			h := old.(*stargate.Hardware).DeepCopy()
			h.Status.State, h.Status.CurrentOS, h.Status.LastJobResult = stargate.HardwareStateProvisioning, "1.0.0", nil
			return h, nil
		}), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.create(newJob("j2", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	hw := e.hardware(t, "server-001")
	if hw.Status.ActiveJob != "j2" || hw.Status.State != stargate.HardwareStateReady || hw.Status.CurrentOS != "3.0.0" ||
		hw.Status.LastJobResult == nil || hw.Status.LastJobResult.Name != "j1" {
		t.Fatalf("after the repair: %+v", hw.Status)
	}
}

// A Job deleted while it ran ends in the write that drops its finalizer,
// which deletes it: the Hardware still gets that end, not the Job as it was
// stored before.
func TestAJobEndedByItsDeletionLeavesItsResult(t *testing.T) {
	e := newEnv(t)
	if err := e.create(newJob("repave-1", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	e.setStatus(t, "repave-1", func(s *stargate.JobStatus) {
		s.Submission = &stargate.JobSubmission{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5"}
		s.Phase, s.DCJobID = stargate.JobRunning, "dc-1"
	})
	if _, _, err := e.jobs.Job.Delete(e.ctx, "repave-1", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "repave-1" || hw.Status.State != stargate.HardwareStateProvisioning {
		t.Fatalf("a Job being deleted (its finalizer on) must keep its Hardware: %+v", hw.Status)
	}
	e.setStatus(t, "repave-1", func(s *stargate.JobStatus) {
		s.Phase, s.Reason, s.Message = stargate.JobFailed, "Deleted", "deleted while running; cancelled at the datacenter"
	})
	if _, err := e.jobs.Job.Get(e.ctx, "repave-1", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Job outlived the write that dropped its finalizer: %v", err)
	}
	hw := e.hardware(t, "server-001")
	if hw.Status.ActiveJob != "" || hw.Status.State != stargate.HardwareStateError || hw.Status.LastJobResult == nil ||
		hw.Status.LastJobResult.Reason != "Deleted" || !meta.IsStatusConditionTrue(hw.Status.Conditions, stargate.HardwareConditionFailed) {
		t.Fatalf("after the Job's last write deleted it: %+v", hw.Status)
	}
}
