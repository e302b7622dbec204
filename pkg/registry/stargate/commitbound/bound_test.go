package commitbound

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/storage"
	testingclock "k8s.io/utils/clock/testing"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

// fakeStorage writes by calling write, which sees the context the write runs under.
type fakeStorage struct {
	storage.Interface
	writes int
	write  func(ctx context.Context) error
}

func (f *fakeStorage) Create(ctx context.Context, _ string, _, _ runtime.Object, _ uint64) error {
	f.writes++
	return f.write(ctx)
}

func (f *fakeStorage) GuaranteedUpdate(ctx context.Context, _ string, _ runtime.Object, _ bool, _ *storage.Preconditions,
	tryUpdate storage.UpdateFunc, _ runtime.Object) error {
	if _, _, err := tryUpdate(&stargate.Job{}, storage.ResponseMeta{}); err != nil {
		return err
	}
	f.writes++
	return f.write(ctx)
}

// inFlight is a write that etcd does not answer before the context ends.
func inFlight(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return errors.New("the write was not cut off")
	}
}

// bounds adapts Storage.Set to these tests: the fake clock is implied.
type bounds struct {
	s   *Storage
	clk *testingclock.FakePassiveClock
}

func (b bounds) Set(obj runtime.Object, deadline time.Time, what string) *Write {
	return b.s.Set(obj, b.clk, deadline, what)
}

func (b bounds) Forget(obj runtime.Object) { b.s.Forget(obj) }

func setup() (bounds, *testingclock.FakePassiveClock, *fakeStorage, *Storage) {
	clk := testingclock.NewFakePassiveClock(time.Now())
	f := &fakeStorage{write: func(context.Context) error { return nil }}
	s := &Storage{Interface: f}
	return bounds{s: s, clk: clk}, clk, f, s
}

func TestDeadlineKeepsAMargin(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	if got, want := Deadline(t0, 30*time.Second), t0.Add(25*time.Second); !got.Equal(want) {
		t.Errorf("Deadline = %s, want %s", got, want)
	}
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	t.Run("unbounded objects pass", func(t *testing.T) {
		_, _, f, s := setup()
		if err := s.Create(ctx, "k", &stargate.Job{}, &stargate.Job{}, 0); err != nil || f.writes != 1 {
			t.Errorf("err %v, %d writes", err, f.writes)
		}
	})
	t.Run("within the bound", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		w := b.Set(obj, clk.Now().Add(time.Minute), "test claim")
		var deadline time.Time
		f.write = func(ctx context.Context) error { deadline, _ = ctx.Deadline(); return nil }
		if err := s.Create(ctx, "k", obj, &stargate.Job{}, 0); err != nil || f.writes != 1 || w.OutcomeUnknown() {
			t.Errorf("err %v, %d writes, unknown %v", err, f.writes, w.OutcomeUnknown())
		}
		if deadline.IsZero() || time.Until(deadline) > time.Minute {
			t.Errorf("the write ran without the bound as its deadline: %v", deadline)
		}
	})
	t.Run("too late: nothing written", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		w := b.Set(obj, clk.Now().Add(time.Second), "test claim")
		clk.SetTime(clk.Now().Add(2 * time.Second))
		err := s.Create(ctx, "k", obj, &stargate.Job{}, 0)
		if !apierrors.IsTimeout(err) || f.writes != 0 || w.OutcomeUnknown() {
			t.Errorf("err %v, %d writes, unknown %v; want 504 and no write", err, f.writes, w.OutcomeUnknown())
		}
	})
	t.Run("cut off in flight: outcome unknown", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		w := b.Set(obj, clk.Now().Add(50*time.Millisecond), "test claim")
		f.write = inFlight
		if err := s.Create(ctx, "k", obj, &stargate.Job{}, 0); !apierrors.IsTimeout(err) || !w.OutcomeUnknown() {
			t.Errorf("err %v, unknown %v; want 504 and an unknown outcome", err, w.OutcomeUnknown())
		}
	})
	t.Run("already exists: known, nothing written", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		w := b.Set(obj, clk.Now().Add(time.Minute), "test claim")
		f.write = func(context.Context) error { return storage.NewKeyExistsError("k", 0) }
		if err := s.Create(ctx, "k", obj, &stargate.Job{}, 0); !storage.IsExist(err) || w.OutcomeUnknown() {
			t.Errorf("err %v, unknown %v", err, w.OutcomeUnknown())
		}
	})
	t.Run("other failures: outcome unknown", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		w := b.Set(obj, clk.Now().Add(time.Minute), "test claim")
		f.write = func(context.Context) error { return errors.New("etcdserver: request timed out") }
		if err := s.Create(ctx, "k", obj, &stargate.Job{}, 0); err == nil || !w.OutcomeUnknown() {
			t.Errorf("err %v, unknown %v", err, w.OutcomeUnknown())
		}
	})
	t.Run("forgotten: unbounded", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		b.Set(obj, clk.Now(), "test claim")
		b.Forget(obj)
		if err := s.Create(ctx, "k", obj, &stargate.Job{}, 0); err != nil || f.writes != 1 {
			t.Errorf("err %v, %d writes", err, f.writes)
		}
	})
}

func TestGuaranteedUpdate(t *testing.T) {
	ctx := context.Background()
	update := func(_ bounds, s *Storage, obj runtime.Object) error {
		return s.GuaranteedUpdate(ctx, "k", &stargate.Job{}, false, nil,
			func(runtime.Object, storage.ResponseMeta) (runtime.Object, *uint64, error) { return obj, nil, nil }, nil)
	}
	t.Run("within the bound", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		b.Set(obj, clk.Now().Add(time.Minute), "test claim")
		if err := update(b, s, obj); err != nil || f.writes != 1 {
			t.Errorf("err %v, %d writes", err, f.writes)
		}
	})
	t.Run("too late: nothing written", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		b.Set(obj, clk.Now().Add(-time.Second), "test claim")
		if err := update(b, s, obj); !apierrors.IsTimeout(err) || f.writes != 0 {
			t.Errorf("err %v, %d writes; want 504 and no write", err, f.writes)
		}
	})
	t.Run("cut off in flight", func(t *testing.T) {
		b, clk, f, s := setup()
		obj := &stargate.Job{}
		w := b.Set(obj, clk.Now().Add(50*time.Millisecond), "test claim")
		f.write = inFlight
		if err := update(b, s, obj); !apierrors.IsTimeout(err) || !w.OutcomeUnknown() {
			t.Errorf("err %v, unknown %v; want 504 and an unknown outcome", err, w.OutcomeUnknown())
		}
	})
}

func TestDecorateAndOf(t *testing.T) {
	scheme := registrytest.Scheme()
	opts, err := Decorate(registrytest.RESTOptionsGetter(t, scheme)).GetRESTOptions(stargate.Resource("jobs"), &stargate.Job{})
	if err != nil {
		t.Fatal(err)
	}
	s, destroy, err := opts.Decorator(opts.StorageConfig, "/"+opts.ResourcePrefix, nil,
		func() runtime.Object { return &stargate.Job{} }, func() runtime.Object { return &stargate.JobList{} }, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer destroy()
	store := &genericregistry.Store{DefaultQualifiedResource: stargate.Resource("jobs")}
	store.Storage.Storage = s
	if _, err := Of(store); err != nil {
		t.Errorf("a decorated store: %v", err)
	}
	store.Storage.Storage = s.(*Storage).Interface
	if _, err := Of(store); err == nil || !strings.Contains(err.Error(), "commitbound.Decorate") {
		t.Errorf("an undecorated store: %v, want an error saying how to fix it", err)
	}
}
