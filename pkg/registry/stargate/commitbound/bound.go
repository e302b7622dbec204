// Package commitbound puts a deadline on a store's write of one object, so
// that a claim taken for that write (a Hardware lock, an identity index key)
// can be judged abandoned by others without a chance that the write still
// lands afterwards.
//
// A kind's NewStorage completes its store with Decorate, which wraps the
// store's storage in a *Storage. A hook that takes a claim (BeginCreate,
// BeginUpdate) finds it with Of and calls Set with the object it is about to
// let through and the deadline the claim allows. The storage then
//
//   - refuses to start the write at or after the deadline (504 Timeout,
//     nothing written), and
//   - cancels the write's context at the deadline, so that the etcd client
//     sends nothing after it.
//
// Which leaves one window: a write sent just before its deadline and applied
// by etcd after it. Deadline therefore ends every write Margin before the
// claim's grace runs out, and a claim must not be judged abandoned before its
// full grace. The margin, 5 s of a 30 s grace, is what the guarantee
// assumes of the world: that etcd applies a write within it of receiving it,
// and that the replicas' clocks agree within what is left of it.
//
// A write whose outcome is unknown (cancelled in flight, or failed in a way
// that does not prove nothing was stored) is reported by OutcomeUnknown: the
// hook that took the claim must then keep it, and let it go stale, rather
// than release it on a guess.
//
// A create can do without a bound: a hook that calls SetJoint instead has its
// claim committed in the create's own etcd transaction (a Joint), so the
// claim and the object are stored together or not at all, in one round trip.
package commitbound

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Deadline is the latest time a write may start under a claim taken at
// takenAt that others respect for grace: Margin before the grace ends.
func Deadline(takenAt time.Time, grace time.Duration) time.Time {
	return takenAt.Add(grace - Margin(grace))
}

// Margin is the part of a grace kept for a write in flight to be applied and
// for replicas' clocks to differ: a sixth of it (5 s of 30 s).
func Margin(grace time.Duration) time.Duration { return grace / 6 }

// Storage is a store's storage whose writes are bounded by the deadlines
// Set for the objects they write.
type Storage struct {
	storage.Interface
	pending sync.Map // runtime.Object (the pointer the store writes) -> *Write
	joints  sync.Map // runtime.Object (the pointer the store creates) -> *Joint
	// objects writes the store's objects for joint creates; nil if the
	// storage was not made by Decorate (joints are then taken Otherwise).
	objects *objects
}

// Decorate returns getter with every store's storage wrapped in a *Storage.
// Pass it to CompleteWithOptions: wrapping there, before the store starts
// anything that reads its storage, is free of races.
func Decorate(getter generic.RESTOptionsGetter) generic.RESTOptionsGetter {
	return decorating{getter}
}

type decorating struct{ generic.RESTOptionsGetter }

func (d decorating) GetRESTOptions(resource schema.GroupResource, example runtime.Object) (generic.RESTOptions, error) {
	opts, err := d.RESTOptionsGetter.GetRESTOptions(resource, example)
	if err != nil || opts.Decorator == nil {
		return opts, err
	}
	decorator := opts.Decorator
	opts.Decorator = func(config *storagebackend.ConfigForResource, resourcePrefix string, keyFunc func(runtime.Object) (string, error),
		newFunc, newListFunc func() runtime.Object, getAttrs storage.AttrFunc, trigger storage.IndexerFuncs, indexers *cache.Indexers,
	) (storage.Interface, factory.DestroyFunc, error) {
		s, destroy, err := decorator(config, resourcePrefix, keyFunc, newFunc, newListFunc, getAttrs, trigger, indexers)
		if err != nil {
			return s, destroy, err
		}
		return &Storage{Interface: s, objects: newObjects(config, resourcePrefix)}, destroy, nil
	}
	return opts, nil
}

// Of returns the bounded storage of store, completed with a Decorate getter.
func Of(store *genericregistry.Store) (*Storage, error) {
	s, ok := store.Storage.Storage.(*Storage)
	if !ok {
		return nil, fmt.Errorf("the storage of %s does not bound its writes (%T): complete the store with commitbound.Decorate",
			store.DefaultQualifiedResource, store.Storage.Storage)
	}
	return s, nil
}

// Write is the bound of one object's write.
type Write struct {
	clock    clock.PassiveClock
	deadline time.Time
	what     string
	unknown  atomic.Bool
}

// OutcomeUnknown reports whether the storage write was tried and failed
// without proving that nothing was stored.
func (w *Write) OutcomeUnknown() bool { return w != nil && w.unknown.Load() }

// Set bounds the write of obj, the very object the store is about to write,
// by deadline as clk tells the time. what says, for the operator, which claim
// sets it ("Job j1 locked Hardware server-001 at 10:00:00Z, ..."). A later
// Set of the same object replaces it.
func (s *Storage) Set(obj runtime.Object, clk clock.PassiveClock, deadline time.Time, what string) *Write {
	w := &Write{clock: clk, deadline: deadline, what: what}
	s.pending.Store(obj, w)
	return w
}

// Forget drops obj's bound and joint claim: its request ended before the
// storage write.
func (s *Storage) Forget(obj runtime.Object) {
	s.pending.Delete(obj)
	s.joints.Delete(obj)
}

func (s *Storage) take(obj runtime.Object) (*Write, bool) {
	v, ok := s.pending.LoadAndDelete(obj)
	if !ok {
		return nil, false
	}
	return v.(*Write), true
}

var errDeadline = errors.New("the write's deadline passed")

// tooLate is the answer to a write that reaches storage after its deadline.
func (w *Write) tooLate() error {
	return apierrors.NewTimeoutError(fmt.Sprintf(
		"not stored: %s, so the write had to start by %s, and the request reached storage after that "+
			"(admission, such as a slow webhook, took too long); nothing was written, send it again",
		w.what, w.deadline.UTC().Format(time.RFC3339)), 0)
}

// cutOff is the answer to a write cancelled in flight at its deadline.
func (w *Write) cutOff() error {
	return apierrors.NewTimeoutError(fmt.Sprintf(
		"outcome unknown: %s, so the write had to be done by %s; it was cut off in flight then, "+
			"and may or may not have been stored: look before sending it again",
		w.what, w.deadline.UTC().Format(time.RFC3339)), 0)
}

// Create creates obj: with its joint claim in one transaction if it has
// one, within its bound if it has one.
func (s *Storage) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	if j, ok := s.takeJoint(obj); ok {
		if s.objects != nil && ttl == 0 {
			if done, err := s.createJointly(ctx, key, obj, out, j); done {
				return err
			}
		}
		if err := j.Otherwise(ctx); err != nil {
			return err
		}
	}
	w, ok := s.take(obj)
	if !ok {
		return s.Interface.Create(ctx, key, obj, out, ttl)
	}
	remaining := w.deadline.Sub(w.clock.Now())
	if remaining <= 0 {
		return w.tooLate()
	}
	ctx, cancel := context.WithTimeoutCause(ctx, remaining, errDeadline)
	defer cancel()
	err := s.Interface.Create(ctx, key, obj, out, ttl)
	if err == nil || storage.IsExist(err) {
		return err
	}
	w.unknown.Store(true)
	if errors.Is(context.Cause(ctx), errDeadline) {
		return w.cutOff()
	}
	return err
}

// GuaranteedUpdate writes what tryUpdate returns, within that object's bound
// if it has one.
func (s *Storage) GuaranteedUpdate(ctx context.Context, key string, destination runtime.Object, ignoreNotFound bool,
	preconditions *storage.Preconditions, tryUpdate storage.UpdateFunc, cachedExistingObject runtime.Object) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		w     *Write
		timer *time.Timer
	)
	stop := func() {
		if timer != nil {
			timer.Stop()
			timer = nil
		}
	}
	defer stop()
	bounded := func(input runtime.Object, res storage.ResponseMeta) (runtime.Object, *uint64, error) {
		stop() // each attempt is bounded by its own claim
		w = nil
		out, ttl, err := tryUpdate(input, res)
		if err != nil || out == nil {
			return out, ttl, err
		}
		var ok bool
		if w, ok = s.take(out); !ok {
			return out, ttl, nil
		}
		remaining := w.deadline.Sub(w.clock.Now())
		if remaining <= 0 {
			return nil, nil, w.tooLate()
		}
		timer = time.AfterFunc(remaining, func() { cancel(errDeadline) })
		return out, ttl, nil
	}
	err := s.Interface.GuaranteedUpdate(ctx, key, destination, ignoreNotFound, preconditions, bounded, cachedExistingObject)
	if err != nil && w != nil && errors.Is(context.Cause(ctx), errDeadline) {
		w.unknown.Store(true)
		return w.cutOff()
	}
	return err
}
