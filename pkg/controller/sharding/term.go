package sharding

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// errSessionLost ends a term whose lease expired or was revoked.
var errSessionLost = errors.New("this replica's etcd lease expired or was revoked (paused or cut off from etcd for longer than its TTL)")

// term is one etcd session of this replica: join, drive what is assigned,
// stop everything when the session or Run's context ends.
type term struct {
	s       *Sharder
	session *concurrency.Session
	// ctx ends when the session is lost or Run's context ends; every
	// shard's context derives from it.
	ctx     context.Context
	cancel  context.CancelCauseFunc
	acquire Acquire
	logger  klog.Logger
	// shards counts the shard goroutines of this term.
	shards sync.WaitGroup
}

// runTerm opens a session, joins, and reconciles until the session or ctx
// ends; it returns once every shard of the session has stopped and the lease
// is revoked.
func (s *Sharder) runTerm(ctx context.Context, logger klog.Logger, acquire Acquire) error {
	if s.cfg.Ready != nil && !s.cfg.Ready(ctx) {
		return errors.New("the controllers' caches did not fill")
	}
	session, err := concurrency.NewSession(s.cfg.Client, concurrency.WithTTL(s.ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("opening an etcd session: %w", err)
	}
	termCtx, cancel := context.WithCancelCause(ctx)
	t := &term{
		s: s, session: session, ctx: termCtx, cancel: cancel, acquire: acquire,
		logger: logger.WithValues("lease", fmt.Sprintf("%x", session.Lease())),
	}
	s.mu.Lock()
	s.lease = session.Lease()
	s.mu.Unlock()
	defer t.close(ctx)
	go func() {
		select {
		case <-session.Done():
			// The session also ends when ctx does (shutting down): only
			// a session that ends first was lost. (ctx's error is set
			// before any of its children, the session's among them, is
			// cancelled; termCtx's may be set after.)
			if ctx.Err() == nil && termCtx.Err() == nil {
				t.logger.Info("This replica's etcd lease expired or was revoked; stopping all its datacenters")
				cancel(errSessionLost)
			}
		case <-termCtx.Done():
		}
	}()
	return t.run()
}

// close stops every shard and waits for them (each resigns), then revokes the
// lease with a context of its own: ctx may be done, and a lease left behind
// would keep this replica a member, and hold any key a resign missed, for a
// whole TTL.
func (t *term) close(ctx context.Context) {
	t.cancel(context.Canceled)
	t.shards.Wait()
	t.s.mu.Lock()
	t.s.lease = 0
	t.s.mu.Unlock()
	t.session.Orphan()
	revokeCtx, done := context.WithTimeout(context.WithoutCancel(ctx), etcdCleanupTimeout)
	defer done()
	if _, err := t.s.cfg.Client.Revoke(revokeCtx, t.session.Lease()); err != nil && ctx.Err() == nil {
		t.logger.V(2).Info("Could not revoke the lease of the lost session (it has most likely expired already)", "err", err)
	}
}

// run joins and reconciles until t.ctx ends. Membership changes apply once
// they have settled; a kick (a namespace wanted or forgotten, a shard that
// ended) reconciles at once against the last settled membership.
func (t *term) run() error {
	if err := t.join(); err != nil {
		return fmt.Errorf("joining as a member: %w", err)
	}
	t.logger.Info("Joined the replicas that drive datacenters")
	members, watch, stopWatch := t.watchMembers(nil)
	defer func() { stopWatch() }()

	settle := newSettler(t.s.cfg.Settle)
	defer settle.timer.Stop()
	var settled []string // nil until the first membership has settled
	for {
		select {
		case <-t.ctx.Done():
			return context.Cause(t.ctx)
		case resp, ok := <-watch:
			if !ok || resp.Err() != nil {
				stopWatch()
				if t.ctx.Err() != nil {
					return context.Cause(t.ctx)
				}
				t.logger.V(2).Info("The watch on the members ended; listing them again", "err", watchErr(ok, resp))
				members, watch, stopWatch = t.watchMembers(members)
				settle.changed()
			} else if applyMemberEvents(members, resp.Events, t.s.membersPrefix) {
				settle.changed()
			}
			if !members[t.s.cfg.Identity] {
				t.rejoin()
			}
		case <-settle.timer.C:
			settle.fired()
			next := memberList(members, t.s.cfg.Identity)
			if !slices.Equal(next, settled) {
				t.logger.Info("Replicas settled; assigning datacenters", "members", next)
			}
			settled = next
			t.reconcile(settled)
		case <-t.s.kick:
			if settled != nil {
				t.reconcile(settled)
			}
		}
	}
}

// join puts this replica's member key on the session's lease.
func (t *term) join() error {
	_, err := t.s.cfg.Client.Put(t.ctx, t.s.membersPrefix+t.s.cfg.Identity, t.s.cfg.Identity, clientv3.WithLease(t.session.Lease()))
	return err
}

// rejoin puts back this replica's member key, gone while the session seemed
// alive: without it the others would campaign for this replica's datacenters
// and wait behind it for good. If the lease is gone too, the session is lost,
// whether or not its keep-alive has noticed yet.
func (t *term) rejoin() {
	err := t.join()
	switch {
	case err == nil:
		t.logger.Info("This replica's member key was deleted while its session lived; put it back")
	case t.leaseGone():
		t.logger.Info("This replica's etcd lease expired or was revoked; stopping all its datacenters")
		t.cancel(errSessionLost)
	case t.ctx.Err() == nil:
		t.logger.Error(err, "This replica's member key was deleted and could not be put back; the other replicas may wait for its datacenters")
	}
}

// leaseGone reports whether etcd says the session's lease no longer exists
// (TTL -1); false if etcd cannot be asked.
func (t *term) leaseGone() bool {
	resp, err := t.s.cfg.Client.TimeToLive(t.ctx, t.session.Lease())
	return err == nil && resp.TTL <= 0
}

// watchMembers lists the members and watches them from the revision after
// the list, retrying until it succeeds or t.ctx ends. A failed list keeps
// the members it was given.
func (t *term) watchMembers(members map[string]bool) (map[string]bool, clientv3.WatchChan, context.CancelFunc) {
	for {
		resp, err := t.s.cfg.Client.Get(t.ctx, t.s.membersPrefix, clientv3.WithPrefix())
		if err == nil {
			members = map[string]bool{}
			for _, kv := range resp.Kvs {
				members[strings.TrimPrefix(string(kv.Key), t.s.membersPrefix)] = true
			}
			ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(t.ctx))
			return members, t.s.cfg.Client.Watch(ctx, t.s.membersPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)), cancel
		}
		if t.ctx.Err() != nil {
			// A closed channel: run sees t.ctx done and returns.
			closed := make(chan clientv3.WatchResponse)
			close(closed)
			return members, closed, func() {}
		}
		t.logger.Error(err, "Could not list the replicas on etcd; retrying")
		select {
		case <-t.ctx.Done():
		case <-time.After(wait.Jitter(t.s.cfg.RetryPeriod, 0.5)):
		}
	}
}

func watchErr(ok bool, resp clientv3.WatchResponse) error {
	if !ok {
		return errors.New("watch channel closed")
	}
	return resp.Err()
}

// applyMemberEvents updates members and reports whether the set changed.
func applyMemberEvents(members map[string]bool, events []*clientv3.Event, prefix string) bool {
	changed := false
	for _, ev := range events {
		id := strings.TrimPrefix(string(ev.Kv.Key), prefix)
		switch ev.Type {
		case clientv3.EventTypePut:
			changed = changed || !members[id]
			members[id] = true
		case clientv3.EventTypeDelete:
			changed = changed || members[id]
			delete(members, id)
		}
	}
	return changed
}

// memberList is the sorted members, with this replica among them: it knows
// it is a member while its session lives, whatever its watch has seen yet.
func memberList(members map[string]bool, self string) []string {
	out := []string{self}
	for m := range members {
		if m != self {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// reconcile starts a shard for each wanted namespace assigned to this replica
// and stops those no longer assigned (or no longer wanted). Stopped shards
// end on their own; one that ends kicks a new reconcile, which starts it
// again if the namespace came back meanwhile.
func (t *term) reconcile(members []string) {
	if t.ctx.Err() != nil {
		return
	}
	self := t.s.cfg.Identity
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	for ns := range t.s.wanted {
		to := owner(ns, members)
		sh := t.s.shards[ns]
		switch {
		case to == self && sh == nil:
			t.startShard(ns)
		case to != self && sh != nil && !sh.stopping:
			t.logger.Info("Handing the datacenter over to the replica it is assigned to", "namespace", ns, "to", to, "driving", sh.driving)
			sh.stop()
		}
	}
	for ns, sh := range t.s.shards {
		if _, ok := t.s.wanted[ns]; !ok && !sh.stopping {
			t.logger.Info("Datacenter no longer needs a driver; releasing it", "namespace", ns, "driving", sh.driving)
			sh.stop()
		}
	}
}

// settler is the membership debounce: it fires once membership has been
// unchanged for d, or maxSettleFactor×d after the first unapplied change.
type settler struct {
	d       time.Duration
	timer   *time.Timer
	pending bool
	since   time.Time
}

// newSettler starts pending: the first membership applies after d.
func newSettler(d time.Duration) *settler {
	return &settler{d: d, timer: time.NewTimer(d), pending: true, since: time.Now()}
}

func (s *settler) changed() {
	now := time.Now()
	if !s.pending {
		s.pending, s.since = true, now
	}
	s.timer.Reset(max(min(s.d, s.since.Add(maxSettleFactor*s.d).Sub(now)), 0))
}

func (s *settler) fired() { s.pending = false }
