package hwindex

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	testingclock "k8s.io/utils/clock/testing"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/registry/stargate/hardware"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

type env struct {
	hw    *hardware.Storage
	index *Index
	clock *testingclock.FakePassiveClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	scheme := registrytest.Scheme()
	getter, client, prefix := registrytest.Etcd(t, scheme)
	clk := testingclock.NewFakePassiveClock(time.Now())
	index := New(client, prefix, clk, DefaultGrace)
	hw, err := hardware.NewStorage(scheme, getter, index.Install)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hw.Hardware.DestroyFunc)
	return &env{hw: hw, index: index, clock: clk}
}

func ctxIn(ns string) context.Context {
	return genericapirequest.WithNamespace(context.Background(), ns)
}

func hw(ns, name, mac, ip string) *stargate.Hardware {
	return &stargate.Hardware{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: stargate.HardwareSpec{MAC: mac, IPv4: ip}}
}

func (e *env) create(h *stargate.Hardware, validate rest.ValidateObjectFunc, dryRun ...string) error {
	_, err := e.hw.Hardware.Create(ctxIn(h.Namespace), h, validate, &metav1.CreateOptions{DryRun: dryRun})
	return err
}

func (e *env) update(t *testing.T, ns, name string, mutate func(*stargate.Hardware)) error {
	t.Helper()
	_, _, err := e.hw.Hardware.Update(ctxIn(ns), name, rest.DefaultUpdatedObjectInfo(nil,
		func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
			h := old.(*stargate.Hardware).DeepCopy()
			mutate(h)
			return h, nil
		}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	return err
}

// wantDuplicate checks for a 409 AlreadyExists whose cause names the field and the holder.
func wantDuplicate(t *testing.T, err error, fieldPath, holder string) {
	t.Helper()
	status, ok := err.(apierrors.APIStatus)
	if !ok || !apierrors.IsAlreadyExists(err) || status.Status().Code != 409 {
		t.Fatalf("got %v, want 409 AlreadyExists", err)
	}
	d := status.Status().Details
	if d == nil || len(d.Causes) != 1 || d.Causes[0].Field != fieldPath || !strings.Contains(err.Error(), holder) {
		t.Fatalf("got %v (details %+v), want a cause on %s naming %s", err, d, fieldPath, holder)
	}
}

func TestMACIsUniqueEverywhere(t *testing.T) {
	e := newEnv(t)
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatal(err)
	}
	wantDuplicate(t, e.create(hw("dc-east", "server-900", "AA-BB-CC-DD-EE-01", "10.9.9.9"), nil), "spec.mac", "dc-west/server-001")
	if err := e.create(hw("dc-east", "server-901", "aa:bb:cc:dd:ee:02", "10.9.9.9"), nil); err != nil {
		t.Errorf("a new MAC: %v", err)
	}
}

func TestIPv4IsUniqueWithinANamespace(t *testing.T) {
	e := newEnv(t)
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatal(err)
	}
	wantDuplicate(t, e.create(hw("dc-west", "server-002", "aa:bb:cc:dd:ee:02", "10.0.1.5"), nil), "spec.ipv4", "dc-west/server-001")
	if err := e.create(hw("dc-east", "server-002", "aa:bb:cc:dd:ee:02", "10.0.1.5"), nil); err != nil {
		t.Errorf("the same IPv4 in another datacenter: %v", err)
	}
}

func TestUpdatesAreCheckedAndFreeTheOldIdentity(t *testing.T) {
	e := newEnv(t)
	for i, name := range []string{"server-001", "server-002"} {
		if err := e.create(hw("dc-west", name, fmt.Sprintf("aa:bb:cc:dd:ee:0%d", i+1), fmt.Sprintf("10.0.1.%d", i+5)), nil); err != nil {
			t.Fatal(err)
		}
	}
	err := e.update(t, "dc-west", "server-002", func(h *stargate.Hardware) { h.Spec.MAC = "aa:bb:cc:dd:ee:01" })
	wantDuplicate(t, err, "spec.mac", "dc-west/server-001")
	err = e.update(t, "dc-west", "server-002", func(h *stargate.Hardware) { h.Spec.IPv4 = "10.0.1.5" })
	wantDuplicate(t, err, "spec.ipv4", "dc-west/server-001")

	// server-001 moves to a new MAC; its old one is free at once.
	if err := e.update(t, "dc-west", "server-001", func(h *stargate.Hardware) { h.Spec.MAC = "aa:bb:cc:dd:ee:11" }); err != nil {
		t.Fatal(err)
	}
	if err := e.update(t, "dc-west", "server-002", func(h *stargate.Hardware) { h.Spec.MAC = "aa:bb:cc:dd:ee:01" }); err != nil {
		t.Errorf("taking a MAC its holder gave up: %v", err)
	}
	// A status write or label change does not touch the index.
	if err := e.update(t, "dc-west", "server-002", func(h *stargate.Hardware) { h.Labels = map[string]string{"rack": "5"} }); err != nil {
		t.Errorf("label change: %v", err)
	}
}

func TestDeleteAndFailedCreateFreeTheIdentity(t *testing.T) {
	e := newEnv(t)
	denied := func(context.Context, runtime.Object) error {
		return apierrors.NewForbidden(stargate.Resource("hardwares"), "x", nil)
	}
	if err := e.create(hw("dc-west", "denied", "aa:bb:cc:dd:ee:01", "10.0.1.5"), denied); !apierrors.IsForbidden(err) {
		t.Fatalf("admission: %v", err)
	}
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatalf("after a refused create: %v", err)
	}
	if _, _, err := e.hw.Hardware.Delete(ctxIn("dc-west"), "server-001", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.create(hw("dc-east", "server-777", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Errorf("after delete: %v", err)
	}
	if err := e.create(hw("dc-east", "dry", "aa:bb:cc:dd:ee:03", "10.0.1.9"), nil, metav1.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if err := e.create(hw("dc-west", "real", "aa:bb:cc:dd:ee:03", "10.0.1.9"), nil); err != nil {
		t.Errorf("a dry run claimed the MAC: %v", err)
	}
}

func TestStaleClaimsAreTakenOver(t *testing.T) {
	e := newEnv(t)
	// A claim by a Hardware whose create crashed before storing it.
	if _, _, err := e.index.claim(context.Background(), holder{namespace: "dc-west", name: "ghost", uid: "ghost-uid"},
		e.index.claimsOf(ctxIn("dc-west"), hw("dc-west", "ghost", "aa:bb:cc:dd:ee:01", "10.0.1.5")), false); err != nil {
		t.Fatal(err)
	}
	wantDuplicate(t, e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.6"), nil), "spec.mac", "dc-west/ghost")
	e.clock.SetTime(e.clock.Now().Add(DefaultGrace + time.Second))
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Errorf("a stale claim was not taken over: %v", err)
	}
}

// TestConcurrentCreatesWithOneMAC: 20 Hardware with one MAC at once, one wins.
func TestConcurrentCreatesWithOneMAC(t *testing.T) {
	e := newEnv(t)
	const n = 20
	isLoss := func(err error) bool { return apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) }
	won, _ := registrytest.Race(t, n, isLoss, func(i int) error {
		return e.create(hw("dc-west", fmt.Sprintf("server-%02d", i), "aa:bb:cc:dd:ee:01", fmt.Sprintf("10.0.2.%d", i+1)), nil)
	})
	list, err := e.hw.Hardware.List(ctxIn("dc-west"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(list.(*stargate.HardwareList).Items) != 1 {
		t.Errorf("%d of %d creates won, %d stored; want exactly 1", won, n, len(list.(*stargate.HardwareList).Items))
	}
}

// countingKV counts the requests the index sends to etcd.
type countingKV struct {
	clientv3.KV
	txns, gets atomic.Int32
}

func (k *countingKV) Txn(ctx context.Context) clientv3.Txn { k.txns.Add(1); return k.KV.Txn(ctx) }

func (k *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	k.gets.Add(1)
	return k.KV.Get(ctx, key, opts...)
}

// TestANewIdentityIsClaimedByTheCreatesOwnWrite: a create of new identities
// is one etcd transaction, which stores the Hardware and its index keys
// together (at one revision); the index sends nothing else.
func TestANewIdentityIsClaimedByTheCreatesOwnWrite(t *testing.T) {
	e := newEnv(t)
	kv := &countingKV{KV: e.index.client.KV}
	e.index.client.KV = kv
	obj, err := e.hw.Hardware.Create(ctxIn("dc-west"), hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.index.client.KV = kv.KV
	if txns, gets := kv.txns.Load(), kv.gets.Load(); txns != 1 || gets != 0 {
		t.Errorf("the create sent %d transactions and %d reads through the index's client, want 1 and 0", txns, gets)
	}
	created := obj.(*stargate.Hardware)
	for _, key := range []string{path.Join(e.index.prefix, "mac", "aa:bb:cc:dd:ee:01"), path.Join(e.index.prefix, "ipv4", "dc-west", "10.0.1.5")} {
		resp, err := e.index.client.Get(context.Background(), key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("index key %s: %v, %v", key, resp, err)
		}
		if rv := fmt.Sprint(resp.Kvs[0].ModRevision); rv != created.ResourceVersion {
			t.Errorf("index key %s written at revision %s, the Hardware at %s: not one transaction", key, rv, created.ResourceVersion)
		}
	}
	e.checkUnique(t)

	// The same create again fails on its name, and leaves the index as it was.
	err = e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil)
	if !apierrors.IsAlreadyExists(err) || !strings.Contains(err.Error(), `"server-001" already exists`) {
		t.Errorf("creating an existing name: %v, want 409 AlreadyExists on the name", err)
	}
	e.checkUnique(t)
}

// TestAGeneratedNameGetsTheDuplicate: a create whose name the store generates
// is refused on the identity, not taken for a clash of generated names.
func TestAGeneratedNameGetsTheDuplicate(t *testing.T) {
	e := newEnv(t)
	if err := e.create(hw("dc-west", "server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), nil); err != nil {
		t.Fatal(err)
	}
	generated := hw("dc-east", "", "aa:bb:cc:dd:ee:01", "10.9.9.9")
	generated.GenerateName = "server-"
	wantDuplicate(t, e.create(generated, nil), "spec.mac", "dc-west/server-001")
	generated = hw("dc-east", "", "aa:bb:cc:dd:ee:02", "10.9.9.9")
	generated.GenerateName = "server-"
	if err := e.create(generated, nil); err != nil {
		t.Errorf("a generated name with a new MAC: %v", err)
	}
	e.checkUnique(t)
}
