package joblock

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/storage"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/validation"
	"stargate.io/stargate/pkg/registry/stargate/commitbound"
)

// unfinishedJobsFor lists the stored unfinished Jobs of a Hardware.
func (e *env) unfinishedJobsFor(t *testing.T, hw string) []string {
	t.Helper()
	list, err := e.jobs.Job.List(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range list.(*stargate.JobList).Items {
		if j.Spec.HardwareRef.Name == hw && !validation.IsFinished(j.Status.Phase) {
			names = append(names, j.Name)
		}
	}
	return names
}

// TestALockCannotLapseUnderItsCreate: a Job create that took the lock and is
// still in validating admission (which the generic store runs after
// BeginCreate) when the lock's grace runs out must not commit once a second
// Job has taken the lock over: it fails, and one Job holds the Hardware.
func TestALockCannotLapseUnderItsCreate(t *testing.T) {
	e := newEnv(t)
	entered, proceed := make(chan struct{}), make(chan struct{})
	slowAdmission := func(context.Context, runtime.Object) error {
		close(entered)
		<-proceed
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- e.create(newJob("slow", "server-001"), slowAdmission) }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first create never reached admission")
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "slow" {
		t.Fatalf("the first create did not take the lock: %q", hw.Status.ActiveJob)
	}

	// The grace runs out while the first create is in admission: its lock
	// names a Job that is not stored, and looks abandoned.
	e.clock.SetTime(e.clock.Now().Add(DefaultGrace + time.Second))
	if err := e.create(newJob("fast", "server-001"), nil); err != nil {
		t.Fatalf("the second create should repair the lapsed lock: %v", err)
	}

	close(proceed)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the first create did not return")
	}
	if !apierrors.IsTimeout(err) || !strings.Contains(err.Error(), "server-001") || !strings.Contains(err.Error(), "nothing was written") {
		t.Errorf("the create that outlived its lock: %v, want 504 Timeout saying nothing was written", err)
	}
	t.Logf("the slow create's error: %v", err)
	if jobs := e.unfinishedJobsFor(t, "server-001"); len(jobs) != 1 || jobs[0] != "fast" {
		t.Errorf("unfinished Jobs of server-001: %v, want [fast]", jobs)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "fast" {
		t.Errorf("lock held by %q, want fast", hw.Status.ActiveJob)
	}
}

// TestACreateWithinItsBoundCommits: admission that takes most of the grace,
// but ends before the bound, lets the Job through.
func TestACreateWithinItsBoundCommits(t *testing.T) {
	e := newEnv(t)
	slowAdmission := func(context.Context, runtime.Object) error {
		e.clock.SetTime(e.clock.Now().Add(DefaultGrace / 2))
		return nil
	}
	if err := e.create(newJob("j1", "server-001"), slowAdmission); err != nil {
		t.Fatalf("a create within its bound: %v", err)
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "j1" {
		t.Errorf("lock held by %q, want j1", hw.Status.ActiveJob)
	}
}

// lostAnswer is a Job storage whose next create is stored but answered with
// an error, as when etcd applies a write and its answer is lost.
type lostAnswer struct {
	storage.Interface
	armed atomic.Bool
}

func (s *lostAnswer) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	err := s.Interface.Create(ctx, key, obj, out, ttl)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		return errors.New("etcdserver: request timed out")
	}
	return err
}

// TestACreateWithALostAnswerKeepsTheLock: a create that fails after its
// write may have landed does not release the lock (unknown is not "no"); if
// the Job was stored it keeps its Hardware, and no second Job gets in.
func TestACreateWithALostAnswerKeepsTheLock(t *testing.T) {
	lossy := &lostAnswer{}
	e := newEnvWith(t, func(store *genericregistry.Store) error {
		// Beneath the bounds, as etcd is.
		bounded, err := commitbound.Of(store)
		if err != nil {
			return err
		}
		lossy.Interface = bounded.Interface
		bounded.Interface = lossy
		return nil
	})
	lossy.armed.Store(true)
	if err := e.create(newJob("lost", "server-001"), nil); err == nil {
		t.Fatal("the create whose answer was lost succeeded")
	}
	if hw := e.hardware(t, "server-001"); hw.Status.ActiveJob != "lost" {
		t.Fatalf("the lock was released after an unknown outcome: %q", hw.Status.ActiveJob)
	}
	wantConflictNaming(t, e.create(newJob("second", "server-001"), nil), "lost")
	if jobs := e.unfinishedJobsFor(t, "server-001"); len(jobs) != 1 || jobs[0] != "lost" {
		t.Errorf("unfinished Jobs of server-001: %v, want [lost]", jobs)
	}
}
