// Package hwindex keeps Hardware identities unique: no two Hardware share a
// MAC address (anywhere) or an IPv4 address (within a namespace), however
// creates, updates and deletes race, from one server or several.
//
// Each identity is an index key in etcd, next to the objects:
//
//	<prefix>/indexes/hardwares/mac/<mac>       -> {"holder":"ns/name","uid":...,"claimedAt":...}
//	<prefix>/indexes/hardwares/ipv4/<ns>/<ip>  -> {"holder":"ns/name","uid":...,"claimedAt":...}
//
// A create, or an update that changes an identity, claims all its keys in one
// etcd transaction, stamping itself as holder: the object's UID, so that a
// Hardware deleted and re-created under the same name is a different holder.
// The transaction succeeds only if each key is still as it was read (absent,
// or held by an entry it judged stale), so of two racing claims exactly one
// wins; the loser gets 409 AlreadyExists naming the holder.
//
// A create's claim of new identities (keys absent) is the create's own
// transaction: the keys and the Hardware are written together or not at all
// (commitbound.Joint), one round trip to etcd, as a create without an index.
// Only when a key is held does the create read it and claim on its own,
// right before its write. An update claims before its write (BeginUpdate),
// and so does a create whose name the store generates.
//
// An entry is live, and refuses everyone else, while its holder (that UID)
//
//   - is stored with that identity, or
//   - may still store it: the claim is younger than the grace period, and
//     the holder is not stored yet (its create may be in flight) or is
//     stored at the very version its claiming update read (an update commits
//     only on the version it read; on any other it retries, and claims again).
//
// Otherwise it is stale and taken over. That is safe only if a write cannot
// land after its claim's grace, so every write that claimed on its own is
// bounded (package commitbound): it may start no later than claimedAt + grace
// minus a margin and is cancelled in flight then; one still in admission at
// that moment fails with 504 Timeout. A holder that claims again rewrites the
// entry, which makes a concurrent takeover's transaction fail. A create that
// claimed on its own and fails before its write, and a delete, give their
// keys back at once (only keys still holding their own claim); a create whose
// write may or may not have landed keeps them, to go stale if it did not.
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/validation"
	"stargate.io/stargate/pkg/registry/stargate/commitbound"
)

// DefaultGrace is how long a claim is respected when its holder is not (yet)
// stored with the identity: its create or update writes milliseconds after
// claiming, and is refused if it has not within the grace minus a margin.
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
	bounds   *commitbound.Storage
}

// New returns an index whose keys live under storagePrefix (the server's
// --etcd-prefix). Call Install on the Hardware store.
func New(client *clientv3.Client, storagePrefix string, clk clock.PassiveClock, grace time.Duration) *Index {
	return &Index{client: client, prefix: path.Join("/", storagePrefix, "indexes", "hardwares"), clock: clk, grace: grace}
}

// Install sets the Hardware store's hooks, before the status subresource
// copies the store. The store's writes must be bounded (commitbound.Decorate).
func (x *Index) Install(store *genericregistry.Store) error {
	bounds, err := commitbound.Of(store)
	if err != nil {
		return err
	}
	x.hardware, x.bounds = store, bounds
	store.BeginCreate = x.beginCreate
	store.BeginUpdate = x.beginUpdate
	store.AfterDelete = x.afterDelete
	return nil
}

// claim is one identity of a Hardware: its index key and the field it comes from.
type claim struct {
	key   string
	field *field.Path
	value string
}

// entry is the value of an index key.
type entry struct {
	Holder string    `json:"holder"`
	UID    types.UID `json:"uid,omitempty"`
	// BasedOn is the resourceVersion of the stored Hardware an update
	// claimed for; empty for a create.
	BasedOn   string    `json:"basedOn,omitempty"`
	ClaimedAt time.Time `json:"claimedAt"`
}

// holder is a Hardware as the index names it: one incarnation of a name,
// and the stored version its write is based on ("" for a create).
type holder struct {
	namespace, name string
	uid             types.UID
	basedOn         string
}

func (h holder) String() string { return h.namespace + "/" + h.name }

// holds reports whether e was written by h. Entries written before holders
// had UIDs match by name.
func (h holder) holds(e entry) bool {
	if e.UID == "" {
		return e.Holder == h.String()
	}
	return e.UID == h.uid
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

func holderOf(ctx context.Context, hw *stargate.Hardware) holder {
	ns := hw.Namespace
	if ns == "" {
		ns = genericapirequest.NamespaceValue(ctx)
	}
	return holder{namespace: ns, name: hw.Name, uid: hw.UID}
}

// beginCreate claims the new Hardware's identities. The claim of a new
// identity is committed in the create's own etcd transaction (a joint claim):
// one round trip, and no bound, since the claim and the Hardware are stored
// together or not at all. When that transaction finds a key held, the claim
// is taken on its own, the careful way (claimHeld), right before the write,
// which its bound then limits. A create with a generateName claims on its own
// here, before admission: the store takes an AlreadyExists from storage for a
// clash of generated names, so a duplicate must be refused before storage.
func (x *Index) beginCreate(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	hw := obj.(*stargate.Hardware)
	c := &createClaim{x: x, hw: hw, self: holderOf(ctx, hw), claims: x.claimsOf(ctx, hw)}
	if len(c.claims) == 0 {
		return noop, nil
	}
	if dryrun.IsDryRun(options.DryRun) {
		_, _, err := x.claim(ctx, c.self, c.claims, true) // reads: a duplicate is refused
		return noop, err
	}
	if hw.GenerateName != "" {
		if err := c.claimAlone(ctx, x.claim); err != nil {
			return noop, err
		}
		return c.finish, nil
	}
	value := x.entryOf(c.self, x.clock.Now().UTC())
	joint := &commitbound.Joint{Client: x.client,
		Otherwise: func(ctx context.Context) error { return c.claimAlone(ctx, x.claimHeld) }}
	for _, cl := range c.claims {
		joint.If = append(joint.If, clientv3.Compare(clientv3.CreateRevision(cl.key), "=", 0))
		joint.Then = append(joint.Then, clientv3.OpPut(cl.key, value))
	}
	x.bounds.SetJoint(hw, joint)
	return c.finish, nil
}

// createClaim is the identity claim of one create.
type createClaim struct {
	x      *Index
	hw     *stargate.Hardware
	self   holder
	claims []claim
	// rev is the revision of a claim taken alone (0: none), write its bound.
	rev   int64
	write *commitbound.Write
}

// claimAlone claims the identities in a transaction of their own, and bounds
// the create's write by the claim.
func (c *createClaim) claimAlone(ctx context.Context, claim func(context.Context, holder, []claim, bool) (int64, time.Time, error)) error {
	rev, claimedAt, err := claim(ctx, c.self, c.claims, false)
	if err != nil {
		return err
	}
	c.rev = rev
	c.write = c.x.bounds.Set(c.hw, c.x.clock, commitbound.Deadline(claimedAt, c.x.grace), c.x.describe(c.self, c.claims, claimedAt))
	return nil
}

// finish gives back, when the create failed, a claim taken alone, unless
// its write may have landed. A joint claim needs nothing: it was stored with
// the Hardware or not at all.
func (c *createClaim) finish(ctx context.Context, success bool) {
	if success {
		return // the bound, if any, is consumed by the write
	}
	c.x.bounds.Forget(c.hw)
	if c.rev == 0 {
		return
	}
	if c.write.OutcomeUnknown() {
		klog.FromContext(ctx).Info("Keeping the identity claims of a Hardware whose write may have landed; they go stale if it did not",
			"hardware", c.self.String(), "grace", c.x.grace)
		return
	}
	c.x.release(c.claims, func(e entry, modRev int64) bool { return modRev == c.rev })
}

// beginUpdate claims the identities of an update that changes one, and
// bounds its write by the claim. This hook runs before the write and again
// on each retry; identities the update drops are not released here (the
// write may yet fail): their entries go stale as soon as the Hardware is
// stored without them. A failed attempt gives back only what it newly claimed.
func (x *Index) beginUpdate(ctx context.Context, obj, old runtime.Object, options *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
	hw, oldHW := obj.(*stargate.Hardware), old.(*stargate.Hardware)
	if hw.Spec.MAC == oldHW.Spec.MAC && hw.Spec.IPv4 == oldHW.Spec.IPv4 {
		return noop, nil // status writes and metadata changes
	}
	self := holderOf(ctx, oldHW)
	self.basedOn = oldHW.ResourceVersion
	claims := x.claimsOf(ctx, hw)
	rev, claimedAt, err := x.claim(ctx, self, claims, dryrun.IsDryRun(options.DryRun))
	if err != nil || rev == 0 {
		return noop, err
	}
	x.bounds.Set(hw, x.clock, commitbound.Deadline(claimedAt, x.grace), x.describe(self, claims, claimedAt))
	had := map[string]bool{}
	for _, c := range x.claimsOf(ctx, oldHW) {
		had[c.key] = true
	}
	var added []claim
	for _, c := range claims {
		if !had[c.key] {
			added = append(added, c)
		}
	}
	return func(ctx context.Context, success bool) {
		if success {
			return // called before the write: the bound is consumed by it
		}
		// This attempt fails before writing anything.
		x.bounds.Forget(hw)
		x.release(added, func(e entry, modRev int64) bool { return modRev == rev })
	}, nil
}

func (x *Index) afterDelete(obj runtime.Object, options *metav1.DeleteOptions) {
	if dryrun.IsDryRun(options.DryRun) {
		return
	}
	hw := obj.(*stargate.Hardware)
	self := holderOf(context.Background(), hw)
	x.release(x.claimsOf(context.Background(), hw), func(e entry, _ int64) bool { return self.holds(e) })
}

// describe says which claim bounds a write, for the error of one that is too late.
func (x *Index) describe(self holder, claims []claim, claimedAt time.Time) string {
	values := make([]string, 0, len(claims))
	for _, c := range claims {
		values = append(values, c.field.String()+" "+c.value)
	}
	return fmt.Sprintf("Hardware %s claimed %s at %s, a claim another Hardware may take over %s later unless this one is stored with them",
		self, strings.Join(values, " and "), claimedAt.UTC().Format(time.RFC3339), x.grace)
}

// claim makes self the holder of every claim, atomically, stamped now. It
// returns the etcd revision of its transaction (0 for a dry run or nothing
// to claim) and the time it stamped. A claim held by another live holder is
// a 409 naming it.
func (x *Index) claim(ctx context.Context, self holder, claims []claim, dryRun bool) (rev int64, claimedAt time.Time, err error) {
	if len(claims) == 0 {
		return 0, time.Time{}, nil
	}
	if !dryRun {
		// The common case is a new identity: claim every key in one
		// transaction that succeeds only if none exists. Otherwise the
		// careful path, claimHeld, reads them and decides.
		now := x.clock.Now().UTC()
		value := x.entryOf(self, now)
		cmps := make([]clientv3.Cmp, 0, len(claims))
		puts := make([]clientv3.Op, 0, len(claims))
		for _, c := range claims {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0))
			puts = append(puts, clientv3.OpPut(c.key, value))
		}
		resp, err := x.client.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return 0, time.Time{}, apierrors.NewServiceUnavailable("writing the Hardware identity index: " + err.Error())
		}
		if resp.Succeeded {
			return resp.Header.Revision, now, nil
		}
	}
	return x.claimHeld(ctx, self, claims, dryRun)
}

// claimHeld is claim for identities that may be held: it reads each key,
// refuses one held by another live holder, and takes the others over in a
// transaction that succeeds only if none changed since read.
func (x *Index) claimHeld(ctx context.Context, self holder, claims []claim, dryRun bool) (rev int64, claimedAt time.Time, err error) {
	for range maxAttempts {
		cmps := make([]clientv3.Cmp, 0, len(claims))
		for _, c := range claims {
			resp, err := x.client.Get(ctx, c.key)
			if err != nil {
				return 0, time.Time{}, apierrors.NewServiceUnavailable("reading the Hardware identity index: " + err.Error())
			}
			if len(resp.Kvs) == 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0))
				continue
			}
			kv := resp.Kvs[0]
			var e entry
			_ = json.Unmarshal(kv.Value, &e) // an unreadable entry is stale
			if !self.holds(e) {
				if x.live(ctx, e, c) {
					return 0, time.Time{}, duplicate(self, e, c)
				}
				klog.FromContext(ctx).Info("Taking over a stale Hardware identity", "field", c.field.String(),
					"value", c.value, "staleHolder", e.Holder, "staleUID", e.UID, "hardware", self.String())
			}
			// Ours already, or stale: rewritten with a fresh time, if unchanged since read.
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.key), "=", kv.ModRevision))
		}
		if dryRun {
			return 0, time.Time{}, nil
		}
		now := x.clock.Now().UTC()
		value := x.entryOf(self, now)
		puts := make([]clientv3.Op, 0, len(claims))
		for _, c := range claims {
			puts = append(puts, clientv3.OpPut(c.key, value))
		}
		resp, err := x.client.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return 0, time.Time{}, apierrors.NewServiceUnavailable("writing the Hardware identity index: " + err.Error())
		}
		if resp.Succeeded {
			return resp.Header.Revision, now, nil
		}
		// Someone changed a key between our read and our write: read again.
	}
	return 0, time.Time{}, apierrors.NewConflict(stargate.Resource("hardwares"), self.name,
		fmt.Errorf("its MAC or IPv4 is being claimed concurrently; try again"))
}

func (x *Index) entryOf(self holder, now time.Time) string {
	value, _ := json.Marshal(entry{Holder: self.String(), UID: self.uid, BasedOn: self.basedOn, ClaimedAt: now})
	return string(value)
}

// live reports whether e's holder may own the identity c:
//
//   - it is stored, as the same incarnation (UID), with that value;
//   - it is stored without it, but the update that claimed it was based on
//     the version stored now (so it may still commit), and claimed it within
//     the grace period (after which its bound has passed);
//   - it is not stored (its create may be in flight, or it was deleted) and
//     claimed it within the grace period.
//
// A holder stored at any other version without the value will never have it
// from this claim: a create commits only once, and an update commits only on
// the version it read (etcd compare-and-swap), else it retries and claims again.
func (x *Index) live(ctx context.Context, e entry, c claim) bool {
	recent := x.clock.Since(e.ClaimedAt) < x.grace
	ns, name, ok := strings.Cut(e.Holder, "/")
	if !ok {
		return false
	}
	obj, err := x.hardware.Get(genericapirequest.WithNamespace(ctx, ns), name, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return recent
	}
	if err != nil {
		return true // cannot tell: refuse rather than risk a duplicate
	}
	hw := obj.(*stargate.Hardware)
	if e.UID != "" && hw.UID != e.UID {
		return recent // another Hardware of that name; the claimant's create may be in flight
	}
	if (c.field.String() == "spec.mac" && hw.Spec.MAC == c.value) ||
		(c.field.String() == "spec.ipv4" && hw.Spec.IPv4 == c.value) {
		return true
	}
	return recent && e.BasedOn != "" && e.BasedOn == hw.ResourceVersion
}

// release deletes the entries of claims for which mine is true, each only if
// unchanged since read. Failures are logged: an entry left behind goes stale
// and is taken over by the next claim.
func (x *Index) release(claims []claim, mine func(e entry, modRevision int64) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range claims {
		resp, err := x.client.Get(ctx, c.key)
		if err != nil || len(resp.Kvs) == 0 {
			continue
		}
		var e entry
		if json.Unmarshal(resp.Kvs[0].Value, &e) == nil && !mine(e, resp.Kvs[0].ModRevision) {
			continue
		}
		_, err = x.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(c.key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(c.key)).Commit()
		if err != nil {
			klog.ErrorS(err, "Could not release a Hardware identity; it will be taken over once stale", "key", c.key)
		}
	}
}

// duplicate is the 409 AlreadyExists a Hardware gets for another's identity.
func duplicate(self holder, e entry, c claim) error {
	msg := fmt.Sprintf("%s %s is already registered to Hardware %s", c.field, c.value, e.Holder)
	if e.Holder == self.String() {
		msg = fmt.Sprintf("%s %s is still held by an earlier Hardware named %s (being deleted, or its create in flight); try again in a few seconds",
			c.field, c.value, e.Holder)
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonAlreadyExists,
		Message: fmt.Sprintf("Hardware %q cannot be saved: %s", self.name, msg),
		Details: &metav1.StatusDetails{Group: stargate.GroupName, Kind: "hardwares", Name: self.name,
			Causes: []metav1.StatusCause{{Type: metav1.CauseTypeFieldValueDuplicate, Field: c.field.String(), Message: msg}}},
	}}
}

func noop(context.Context, bool) {}
