package hwindex

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"path"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"stargate.io/stargate/pkg/apis/stargate"
)

// pause is a failpoint between a hook's claim and the storage write: the
// request's admission (createValidation / updateValidation), which the
// generic store runs after BeginCreate / BeginUpdate and before it writes.
type pause struct {
	entered chan struct{}
	proceed chan struct{}
}

func newPause() *pause { return &pause{entered: make(chan struct{}), proceed: make(chan struct{})} }

func (p *pause) create(context.Context, runtime.Object) error {
	close(p.entered)
	<-p.proceed
	return nil
}

func (p *pause) update(context.Context, runtime.Object, runtime.Object) error {
	close(p.entered)
	<-p.proceed
	return nil
}

// wait waits, bounded, until the paused request has claimed and reached admission.
func (p *pause) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the request never reached admission")
	}
}

// result waits, bounded, for a request run in the background.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not return")
		return nil
	}
}

func genericCtx(ctx context.Context, ns string) context.Context {
	return genericapirequest.WithNamespace(ctx, ns)
}

// updateMAC changes name's MAC in the background, pausing at p.
func (e *env) updateMAC(ns, name, mac string, p *pause) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := e.hw.Hardware.Update(ctxIn(ns), name, rest.DefaultUpdatedObjectInfo(nil,
			func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
				h := old.(*stargate.Hardware).DeepCopy()
				h.Spec.MAC = mac
				return h, nil
			}), rest.ValidateAllObjectFunc, p.update, false, &metav1.UpdateOptions{})
		done <- err
	}()
	return done
}

// stored lists every Hardware in every namespace.
func (e *env) stored(t *testing.T) []stargate.Hardware {
	t.Helper()
	list, err := e.hw.Hardware.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return list.(*stargate.HardwareList).Items
}

// checkUnique fails the test if two stored Hardware share a MAC, or an IPv4
// within a namespace, and if a stored Hardware's index keys are not held by it.
func (e *env) checkUnique(t *testing.T) {
	t.Helper()
	macs, ips := map[string]string{}, map[string]string{}
	for _, h := range e.stored(t) {
		self := h.Namespace + "/" + h.Name
		if other, dup := macs[h.Spec.MAC]; dup {
			t.Errorf("MAC %s is on %s and %s", h.Spec.MAC, other, self)
		}
		macs[h.Spec.MAC] = self
		ipKey := h.Namespace + "/" + h.Spec.IPv4
		if other, dup := ips[ipKey]; dup {
			t.Errorf("IPv4 %s is on %s and %s", ipKey, other, self)
		}
		ips[ipKey] = self
		for _, key := range []string{path.Join(e.index.prefix, "mac", h.Spec.MAC), path.Join(e.index.prefix, "ipv4", h.Namespace, h.Spec.IPv4)} {
			resp, err := e.index.client.Get(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			var held struct {
				Holder string `json:"holder"`
				UID    string `json:"uid"`
			}
			if len(resp.Kvs) == 1 {
				_ = json.Unmarshal(resp.Kvs[0].Value, &held)
			}
			if held.Holder != self || held.UID != string(h.UID) {
				t.Errorf("%s (uid %s) has %s, but the index key is held by %+v", self, h.UID, key, held)
			}
		}
	}
}

// TestAnUpdatesClaimHoldsUntilItsWriteCommits: while an update that moves a
// Hardware to a new MAC is between its claim and its write, a create with
// that MAC is refused (it used to see the holder without the MAC yet, judge
// the claim stale, take it, and both committed).
func TestAnUpdatesClaimHoldsUntilItsWriteCommits(t *testing.T) {
	e := newEnv(t)
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatal(err)
	}
	p := newPause()
	done := e.updateMAC("dc-west", "server-001", "aa:bb:cc:dd:ee:02", p)
	p.wait(t)

	wantDuplicate(t, e.create(hw("dc-east", "server-900", "aa:bb:cc:dd:ee:02", "10.9.9.9"), nil), "spec.mac", "dc-west/server-001")
	close(p.proceed)
	if err := result(t, done); err != nil {
		t.Fatalf("the update: %v", err)
	}
	e.checkUnique(t)
	if n := len(e.stored(t)); n != 1 {
		t.Errorf("%d Hardware stored, want 1", n)
	}
}

// TestAnUpdatePastItsBoundCannotCommit: a claim older than the grace whose
// holder does not have the MAC is taken over, and the update that took it,
// still in admission, must then fail rather than commit the MAC a second time.
func TestAnUpdatePastItsBoundCannotCommit(t *testing.T) {
	e := newEnv(t)
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatal(err)
	}
	p := newPause()
	done := e.updateMAC("dc-west", "server-001", "aa:bb:cc:dd:ee:02", p)
	p.wait(t)

	e.clock.SetTime(e.clock.Now().Add(DefaultGrace + time.Second))
	if err := e.create(hw("dc-east", "server-900", "aa:bb:cc:dd:ee:02", "10.9.9.9"), nil); err != nil {
		t.Fatalf("a claim past its grace, of a Hardware without that MAC, should be taken over: %v", err)
	}
	close(p.proceed)
	if err := result(t, done); !apierrors.IsTimeout(err) {
		t.Errorf("the update that outlived its claim: %v, want 504 Timeout", err)
	}
	e.checkUnique(t)
}

// TestACreatePastItsBoundCannotCommit: the same for a create that claimed
// before admission (its name is generated) and whose claim was taken over
// while it was in admission.
func TestACreatePastItsBoundCannotCommit(t *testing.T) {
	e := newEnv(t)
	p := newPause()
	done := make(chan error, 1)
	slow := hw("dc-west", "", "aa:bb:cc:dd:ee:01", "10.0.1.5")
	slow.GenerateName = "slow-"
	go func() { done <- e.create(slow, p.create) }()
	p.wait(t)

	e.clock.SetTime(e.clock.Now().Add(DefaultGrace + time.Second))
	if err := e.create(hw("dc-west", "fast", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatalf("a claim past its grace by a Hardware never stored should be taken over: %v", err)
	}
	close(p.proceed)
	if err := result(t, done); !apierrors.IsTimeout(err) {
		t.Errorf("the create that outlived its claim: %v, want 504 Timeout", err)
	}
	e.checkUnique(t)
}

// TestTheFirstCreateStoredKeepsTheIdentity: a create of a new identity claims
// it in its own write, so one still in admission holds nothing yet; of two
// creates with one MAC, the one stored first keeps it and the other gets 409.
func TestTheFirstCreateStoredKeepsTheIdentity(t *testing.T) {
	e := newEnv(t)
	p := newPause()
	done := make(chan error, 1)
	go func() { done <- e.create(hw("dc-west", "slow", "aa:bb:cc:dd:ee:01", "10.0.1.5"), p.create) }()
	p.wait(t)

	if err := e.create(hw("dc-east", "fast", "AA-BB-CC-DD-EE-01", "10.0.1.5"), nil); err != nil {
		t.Fatalf("a create while another with its MAC is in admission: %v", err)
	}
	close(p.proceed)
	wantDuplicate(t, result(t, done), "spec.mac", "dc-east/fast")
	e.checkUnique(t)
	if n := len(e.stored(t)); n != 1 {
		t.Errorf("%d Hardware stored, want 1", n)
	}
}

// TestDeleteThenRecreateKeepsTheClaims: a Hardware re-created under the name
// of one being deleted keeps its claims when the old one's delete hook runs
// late (claims used to be keyed by name, so the old one gave away the new
// one's MAC).
func TestDeleteThenRecreateKeepsTheClaims(t *testing.T) {
	e := newEnv(t)
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatal(err)
	}
	// The old claims are old: the first Hardware has been around for a while.
	e.clock.SetTime(e.clock.Now().Add(DefaultGrace + time.Second))

	store := e.hw.Hardware.Store
	afterDelete := store.AfterDelete
	p := newPause()
	store.AfterDelete = func(obj runtime.Object, options *metav1.DeleteOptions) {
		close(p.entered)
		<-p.proceed
		afterDelete(obj, options)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := e.hw.Hardware.Delete(ctxIn("dc-west"), "server-001", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
		done <- err
	}()
	p.wait(t) // deleted from etcd, its hook not yet run
	store.AfterDelete = afterDelete

	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatalf("re-creating the name: %v", err)
	}
	close(p.proceed)
	if err := result(t, done); err != nil {
		t.Fatalf("the delete: %v", err)
	}
	wantDuplicate(t, e.create(hw("dc-east", "server-900", "aa:bb:cc:dd:ee:01", "10.9.9.9"), nil), "spec.mac", "dc-west/server-001")
	wantDuplicate(t, e.create(hw("dc-west", "server-901", "aa:bb:cc:dd:ee:09", "10.0.1.5"), nil), "spec.ipv4", "dc-west/server-001")
	e.checkUnique(t)

	// Deleted and re-created one after the other, the usual way, works at once.
	if _, _, err := e.hw.Hardware.Delete(ctxIn("dc-west"), "server-001", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Errorf("re-creating after a completed delete: %v", err)
	}
	e.checkUnique(t)
}

// TestRandomMixKeepsIdentitiesUnique runs a bounded, seeded mix of concurrent
// creates, updates and deletes over few names and fewer MACs and IPv4s; at
// the end no two Hardware share one, and every stored identity is claimed by
// its Hardware.
func TestRandomMixKeepsIdentitiesUnique(t *testing.T) {
	e := newEnv(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	const workers, opsPerWorker = 8, 30
	macs := []string{"aa:bb:cc:dd:ee:01", "AA-BB-CC-DD-EE-02", "aa:bb:cc:dd:ee:03", "aabb.ccdd.ee04"}
	ips := []string{"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Admission yields between claim and write, to let the others in.
	yield := func(context.Context, runtime.Object) error { time.Sleep(time.Millisecond); return nil }
	yieldUpdate := func(context.Context, runtime.Object, runtime.Object) error { time.Sleep(time.Millisecond); return nil }

	errs := make(chan error, workers)
	for w := range workers {
		rnd := rand.New(rand.NewSource(seed + int64(w)))
		go func() {
			var err error
			for range opsPerWorker {
				if ctx.Err() != nil {
					break
				}
				ns := []string{"dc-west", "dc-east"}[rnd.Intn(2)]
				name := fmt.Sprintf("server-%d", rnd.Intn(5))
				mac, ip := macs[rnd.Intn(len(macs))], ips[rnd.Intn(len(ips))]
				c := genericCtx(ctx, ns)
				switch rnd.Intn(3) {
				case 0:
					_, err = e.hw.Hardware.Create(c, hw(ns, name, mac, ip), yield, &metav1.CreateOptions{})
				case 1:
					changeMAC, changeIP := rnd.Intn(2) == 0, rnd.Intn(2) == 0
					_, _, err = e.hw.Hardware.Update(c, name, rest.DefaultUpdatedObjectInfo(nil,
						func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
							h := old.(*stargate.Hardware).DeepCopy()
							if changeMAC || !changeIP {
								h.Spec.MAC = mac
							}
							if changeIP {
								h.Spec.IPv4 = ip
							}
							return h, nil
						}), rest.ValidateAllObjectFunc, yieldUpdate, false, &metav1.UpdateOptions{})
				case 2:
					_, _, err = e.hw.Hardware.Delete(c, name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
				}
				if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
					break
				}
				err = nil
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the mix did not finish in time")
	}
	e.checkUnique(t)
}
