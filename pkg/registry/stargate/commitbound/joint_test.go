package commitbound

import (
	"context"
	"errors"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/storage"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

// jointEnv is a decorated Hardware storage on a real etcd, and a client of it.
type jointEnv struct {
	s      *Storage
	client *clientv3.Client
	prefix string
}

func newJointEnv(t *testing.T) jointEnv {
	t.Helper()
	getter, client, prefix := registrytest.Etcd(t, registrytest.Scheme())
	opts, err := Decorate(getter).GetRESTOptions(stargate.Resource("hardwares"), &stargate.Hardware{})
	if err != nil {
		t.Fatal(err)
	}
	s, destroy, err := opts.Decorator(opts.StorageConfig, "/"+opts.ResourcePrefix, nil,
		func() runtime.Object { return &stargate.Hardware{} }, func() runtime.Object { return &stargate.HardwareList{} }, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(destroy)
	return jointEnv{s: s.(*Storage), client: client, prefix: prefix}
}

func (e jointEnv) key(name string) string { return "/stargate.io/hardwares/dc-west/" + name }

func (e jointEnv) claimKey(name string) string { return e.prefix + "/test-claims/" + name }

// joint claims claimKey(claim) for the create, and counts the calls of Otherwise.
func (e jointEnv) joint(claim string, otherwise func(context.Context) error) (*Joint, *int) {
	calls := new(int)
	return &Joint{Client: e.client,
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(e.claimKey(claim)), "=", 0)},
		Then: []clientv3.Op{clientv3.OpPut(e.claimKey(claim), "claimed")},
		Otherwise: func(ctx context.Context) error {
			*calls++
			return otherwise(ctx)
		}}, calls
}

// revision is the ModRevision of an etcd key, 0 if there is none.
func (e jointEnv) revision(t *testing.T, key string) int64 {
	t.Helper()
	resp, err := e.client.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

func newHardware(name string) *stargate.Hardware {
	return &stargate.Hardware{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dc-west", UID: types.UID("uid-" + name)},
		Spec: stargate.HardwareSpec{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5"}}
}

func TestJointCreate(t *testing.T) {
	ctx := context.Background()
	nothing := func(context.Context) error { return nil }
	t.Run("the object and the claim in one transaction", func(t *testing.T) {
		e := newJointEnv(t)
		obj, out := newHardware("a"), &stargate.Hardware{}
		j, otherwise := e.joint("a", nothing)
		e.s.SetJoint(obj, j)
		if err := e.s.Create(ctx, e.key("a"), obj, out, 0); err != nil || *otherwise != 0 {
			t.Fatalf("err %v, Otherwise called %d times", err, *otherwise)
		}
		if rv := e.revision(t, e.claimKey("a")); fmt.Sprint(rv) != out.ResourceVersion {
			t.Errorf("claim written at revision %d, the object at %q", rv, out.ResourceVersion)
		}
		// The store's own storage reads what the joint create wrote, where it looks.
		got := &stargate.Hardware{}
		if err := e.s.Get(ctx, e.key("a"), storage.GetOptions{}, got); err != nil {
			t.Fatal(err)
		}
		if got.ResourceVersion != out.ResourceVersion || got.Spec != obj.Spec || got.UID != obj.UID {
			t.Errorf("stored %+v, created %+v", got, out)
		}
	})
	t.Run("the name taken: AlreadyExists, no claim", func(t *testing.T) {
		e := newJointEnv(t)
		if err := e.s.Create(ctx, e.key("b"), newHardware("b"), &stargate.Hardware{}, 0); err != nil {
			t.Fatal(err)
		}
		obj := newHardware("b")
		j, otherwise := e.joint("b", nothing)
		e.s.SetJoint(obj, j)
		if err := e.s.Create(ctx, e.key("b"), obj, &stargate.Hardware{}, 0); !storage.IsExist(err) || *otherwise != 0 {
			t.Errorf("err %v, Otherwise called %d times; want KeyExists and no call", err, *otherwise)
		}
		if rv := e.revision(t, e.claimKey("b")); rv != 0 {
			t.Errorf("the claim was written (revision %d) with a create that failed", rv)
		}
	})
	t.Run("the claim held: Otherwise, then the object alone", func(t *testing.T) {
		e := newJointEnv(t)
		held, err := e.client.Put(ctx, e.claimKey("c"), "held")
		if err != nil {
			t.Fatal(err)
		}
		obj := newHardware("c")
		j, otherwise := e.joint("c", nothing)
		e.s.SetJoint(obj, j)
		if err := e.s.Create(ctx, e.key("c"), obj, &stargate.Hardware{}, 0); err != nil || *otherwise != 1 {
			t.Fatalf("err %v, Otherwise called %d times; want 1", err, *otherwise)
		}
		if rv := e.revision(t, e.claimKey("c")); rv != held.Header.Revision {
			t.Errorf("the held claim was rewritten by the create")
		}
		if err := e.s.Get(ctx, e.key("c"), storage.GetOptions{}, &stargate.Hardware{}); err != nil {
			t.Errorf("the object was not stored: %v", err)
		}
	})
	t.Run("the claim refused: nothing written", func(t *testing.T) {
		e := newJointEnv(t)
		if _, err := e.client.Put(ctx, e.claimKey("d"), "held"); err != nil {
			t.Fatal(err)
		}
		refused := errors.New("refused")
		obj := newHardware("d")
		j, _ := e.joint("d", func(context.Context) error { return refused })
		e.s.SetJoint(obj, j)
		if err := e.s.Create(ctx, e.key("d"), obj, &stargate.Hardware{}, 0); !errors.Is(err, refused) {
			t.Errorf("err %v, want Otherwise's", err)
		}
		if err := e.s.Get(ctx, e.key("d"), storage.GetOptions{}, &stargate.Hardware{}); !storage.IsNotFound(err) {
			t.Errorf("the object was stored: %v", err)
		}
	})
	t.Run("forgotten: the object alone", func(t *testing.T) {
		e := newJointEnv(t)
		obj := newHardware("e")
		j, _ := e.joint("e", nothing)
		e.s.SetJoint(obj, j)
		e.s.Forget(obj)
		if err := e.s.Create(ctx, e.key("e"), obj, &stargate.Hardware{}, 0); err != nil {
			t.Fatal(err)
		}
		if rv := e.revision(t, e.claimKey("e")); rv != 0 {
			t.Errorf("a forgotten joint claim was written")
		}
	})
}
