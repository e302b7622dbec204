// Package hwindex keeps Hardware identities unique: no two Hardware share a
// MAC address (anywhere) or an IPv4 address (within a namespace), even when
// created or changed concurrently, from one server or several.
//
// Each identity is an index key in etcd, next to the objects:
//
//	<prefix>/indexes/hardwares/mac/<mac>          -> {"holder":"ns/name","claimedAt":...}
//	<prefix>/indexes/hardwares/ipv4/<ns>/<ip>     -> {"holder":"ns/name","claimedAt":...}
//
// A create or an update claims its keys in one etcd transaction that
// succeeds only if each key is still as it was read (absent, ours, or stale),
// so of two racing claims exactly one wins. An entry is stale when its holder
// no longer has that MAC/IPv4, or does not exist and claimed it longer than a
// grace period ago (a create that crashed, or failed, after claiming): stale
// entries are taken over in the same transaction. Deletes and failed creates
// give their keys back at once.
package hwindex

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/validation"
)

// DefaultGrace is how long a claim by a Hardware that does not exist is
// respected: its create stores the object milliseconds after claiming.
const DefaultGrace = 30 * time.Second

// maxAttempts bounds the read-compare-write loop under contention.
const maxAttempts = 5

// Index is the uniqueness index of Hardware identities.
type Index struct {
	client   *clientv3.Client
	prefix   string
	hardware *genericregistry.Store
	clock    clock.PassiveClock
	grace    time.Duration
}

// New returns an index whose keys live under storagePrefix (the server's
// --etcd-prefix). Call Install on the Hardware store.
func New(client *clientv3.Client, storagePrefix string, clk clock.PassiveClock, grace time.Duration) *Index {
	return &Index{client: client, prefix: path.Join("/", storagePrefix, "indexes", "hardwares"), clock: clk, grace: grace}
}

// Install sets the Hardware store's hooks.
func (x *Index) Install(store *genericregistry.Store) {
	x.hardware = store
	store.BeginCreate = x.beginCreate
	store.BeginUpdate = x.beginUpdate
	store.AfterDelete = x.afterDelete
}

// claim is one identity of a Hardware: its index key and the field it comes from.
type claim struct {
	key   string
	field *field.Path
	value string
}

// entry is the value of an index key.
type entry struct {
	Holder    string    `json:"holder"`
	ClaimedAt time.Time `json:"claimedAt"`
}

// claimsOf lists hw's identities, normalised as the strategy will store them;
// none for a malformed Hardware, which validation refuses next anyway.
func (x *Index) claimsOf(ctx context.Context, hw *stargate.Hardware) []claim {
	hw = hw.DeepCopy()
	if hw.Namespace == "" {
		hw.Namespace = genericapirequest.NamespaceValue(ctx)
	}
	if mac, ok := validation.NormalizeMAC(hw.Spec.MAC); ok {
		hw.Spec.MAC = mac
	}
	if len(validation.ValidateHardware(hw)) > 0 {
		return nil
	}
	return []claim{
		{key: path.Join(x.prefix, "mac", hw.Spec.MAC), field: field.NewPath("spec", "mac"), value: hw.Spec.MAC},
		{key: path.Join(x.prefix, "ipv4", hw.Namespace, hw.Spec.IPv4), field: field.NewPath("spec", "ipv4"), value: hw.Spec.IPv4},
	}
}

func holderOf(ctx context.Context, hw *stargate.Hardware) string {
	ns := hw.Namespace
	if ns == "" {
		ns = genericapirequest.NamespaceValue(ctx)
	}
	return ns + "/" + hw.Name
}

func (x *Index) beginCreate(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	hw := obj.(*stargate.Hardware)
	self := holderOf(ctx, hw)
	taken, err := x.claim(ctx, self, x.claimsOf(ctx, hw), dryrun.IsDryRun(options.DryRun))
	if err != nil {
		return noop, err
	}
	return func(ctx context.Context, success bool) {
		if !success {
			x.release(self, taken)
		}
	}, nil
}

// beginUpdate claims the identities an update adds. Those it drops are not
// released here (this hook runs before the write commits and may be retried):
// they become stale as soon as the Hardware no longer has them.
func (x *Index) beginUpdate(ctx context.Context, obj, old runtime.Object, options *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
	hw, oldHW := obj.(*stargate.Hardware), old.(*stargate.Hardware)
	if hw.Spec.MAC == oldHW.Spec.MAC && hw.Spec.IPv4 == oldHW.Spec.IPv4 {
		return noop, nil // status writes and metadata changes
	}
	_, err := x.claim(ctx, holderOf(ctx, oldHW), x.claimsOf(ctx, hw), dryrun.IsDryRun(options.DryRun))
	return noop, err
}

func (x *Index) afterDelete(obj runtime.Object, options *metav1.DeleteOptions) {
	if dryrun.IsDryRun(options.DryRun) {
		return
	}
	hw := obj.(*stargate.Hardware)
	var keys []string
	for _, c := range x.claimsOf(context.Background(), hw) {
		keys = append(keys, c.key)
	}
	x.release(holderOf(context.Background(), hw), keys)
}

// claim makes self the holder of every claim, atomically, and returns the
// keys it newly took. A claim held by another live Hardware is a 409 naming it.
func (x *Index) claim(ctx context.Context, self string, claims []claim, dryRun bool) ([]string, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	if !dryRun {
		// The common case is a new identity: claim every key in one
		// transaction that succeeds only if none exists. Otherwise the
		// careful path below reads them and decides.
		cmps := make([]clientv3.Cmp, 0, len(claims))
		puts := make([]clientv3.Op, 0, len(claims))
		taken := make([]string, 0, len(claims))
		value, _ := json.Marshal(entry{Holder: self, ClaimedAt: x.clock.Now().UTC()})
		for _, c := range claims {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0))
			puts = append(puts, clientv3.OpPut(c.key, string(value)))
			taken = append(taken, c.key)
		}
		resp, err := x.client.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return nil, apierrors.NewServiceUnavailable("writing the Hardware identity index: " + err.Error())
		}
		if resp.Succeeded {
			return taken, nil
		}
	}
	for range maxAttempts {
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		var taken []string
		for _, c := range claims {
			resp, err := x.client.Get(ctx, c.key)
			if err != nil {
				return nil, apierrors.NewServiceUnavailable("reading the Hardware identity index: " + err.Error())
			}
			if len(resp.Kvs) == 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0))
			} else {
				kv := resp.Kvs[0]
				var e entry
				_ = json.Unmarshal(kv.Value, &e) // an unreadable entry is stale
				if e.Holder == self {
					continue
				}
				if x.live(ctx, e, c) {
					return nil, duplicate(self, e.Holder, c)
				}
				klog.FromContext(ctx).Info("Taking over a stale Hardware identity", "field", c.field.String(),
					"value", c.value, "staleHolder", e.Holder, "hardware", self)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.key), "=", kv.ModRevision))
			}
			value, _ := json.Marshal(entry{Holder: self, ClaimedAt: x.clock.Now().UTC()})
			puts = append(puts, clientv3.OpPut(c.key, string(value)))
			taken = append(taken, c.key)
		}
		if len(puts) == 0 || dryRun {
			return nil, nil
		}
		resp, err := x.client.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return nil, apierrors.NewServiceUnavailable("writing the Hardware identity index: " + err.Error())
		}
		if resp.Succeeded {
			return taken, nil
		}
		// Someone changed a key between our read and our write: read again.
	}
	return nil, apierrors.NewConflict(stargate.Resource("hardwares"), self,
		fmt.Errorf("its MAC or IPv4 is being claimed concurrently; try again"))
}

// live reports whether e's holder still owns the identity c: it exists with
// that value, or does not exist yet but claimed it within the grace period.
func (x *Index) live(ctx context.Context, e entry, c claim) bool {
	ns, name, ok := splitHolder(e.Holder)
	if !ok {
		return false
	}
	obj, err := x.hardware.Get(genericapirequest.WithNamespace(ctx, ns), name, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return x.clock.Since(e.ClaimedAt) < x.grace
	}
	if err != nil {
		return true // cannot tell: refuse rather than risk a duplicate
	}
	hw := obj.(*stargate.Hardware)
	return (c.field.String() == "spec.mac" && hw.Spec.MAC == c.value) ||
		(c.field.String() == "spec.ipv4" && hw.Spec.IPv4 == c.value)
}

// release gives back the keys self holds. Failures are logged: an entry left
// behind goes stale and is taken over by the next claim.
func (x *Index) release(self string, keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, key := range keys {
		resp, err := x.client.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			continue
		}
		var e entry
		if json.Unmarshal(resp.Kvs[0].Value, &e) == nil && e.Holder != self {
			continue
		}
		_, err = x.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			klog.ErrorS(err, "Could not release a Hardware identity; it will be taken over once stale", "key", key)
		}
	}
}

// duplicate is the 409 AlreadyExists a Hardware gets for another's identity.
func duplicate(self, holder string, c claim) error {
	msg := fmt.Sprintf("%s %s is already registered to Hardware %s", c.field, c.value, holder)
	_, name, _ := splitHolder(self)
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonAlreadyExists,
		Message: fmt.Sprintf("Hardware %q cannot be saved: %s", name, msg),
		Details: &metav1.StatusDetails{Group: stargate.GroupName, Kind: "hardwares", Name: name,
			Causes: []metav1.StatusCause{{Type: metav1.CauseTypeFieldValueDuplicate, Field: c.field.String(), Message: msg}}},
	}}
}

func splitHolder(holder string) (namespace, name string, ok bool) {
	return strings.Cut(holder, "/")
}

func noop(context.Context, bool) {}
