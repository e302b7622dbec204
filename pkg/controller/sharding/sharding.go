// Package sharding spreads the datacenters over the Stargate replicas that
// share one etcd: each datacenter (a namespace: Jobs in dc-west go to
// Datacenter dc-west, and a namespace with Jobs but no Datacenter needs a
// driver too, to cancel and delete them) is driven by exactly one replica at a
// time, and a replica that goes away hands over only its own datacenters.
//
// Each replica keeps a member key under <prefix>/members/ on the lease of its
// etcd session. Rendezvous hashing over the live members says which replica
// should drive each namespace; that replica campaigns for the namespace's
// election key under <prefix>/datacenters/<namespace>/ (the key scheme of
// go.etcd.io/etcd/client/v3/concurrency's Election: one key per session,
// the oldest leads). Ownership is the election key, not the hash: two
// replicas whose views of the members differ may both campaign, but only one
// holds the key, and the other waits in line until the key is released (its
// holder resigned) or its lease expired (its holder stopped renewing). A
// replica drives a namespace only from the moment it holds the key until the
// context it was given ends, and it checks the key on etcd (Leading) right
// before every action with effects outside the API.
package sharding

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// Config says where the replicas meet and who this one is.
type Config struct {
	Client *clientv3.Client
	// Prefix is the etcd prefix under which the members and the
	// datacenters' election keys live, e.g. <etcd-prefix>/controllers.
	Prefix string
	// Identity names this replica (its member key, its election values, its
	// logs). It must be unique among the replicas and contain no "/".
	Identity string
	// TTL is how long a replica that stops renewing (paused, cut off) keeps
	// its datacenters: the lease of its session (rounded to seconds; etcd's
	// minimum applies).
	TTL time.Duration
	// Ready, if set, is called before this replica joins (at start and each
	// time it rejoins after losing its session) and must return true once
	// the controllers' caches are filled, or false if ctx ended first. Until
	// it returns true the replica is no member and is assigned nothing, so
	// the datacenters stay with the replicas that can drive them.
	Ready func(ctx context.Context) bool
	// Settle is how long membership must stay unchanged before the
	// datacenters are reassigned (default 1s), so a burst of replicas
	// joining or leaving moves each datacenter once; under constant churn a
	// reassignment still comes within 5×Settle of the first change.
	Settle time.Duration
	// RetryPeriod is the pause after a failed etcd session, campaign or
	// acquire that returned on its own (default 2s, jittered).
	RetryPeriod time.Duration
}

// Acquire drives one datacenter (namespace) until ctx ends, which it does
// when this replica must stop: the datacenter was assigned to another
// replica, the etcd session was lost, or Run's context ended. It must return
// only once everything it started for ns has stopped: the election key is
// released only then, so the next owner starts after it. It should call
// Sharder.Leading right before every action with effects outside the API.
type Acquire func(ctx context.Context, ns string)

// ErrNotDriving is what Leading returns (wrapped, with the namespace) when
// this replica does not drive the namespace.
var ErrNotDriving = errors.New("this replica does not drive this datacenter now (it is assigned to another replica, or this replica's etcd lease was lost); the replica that holds it acts instead")

const (
	defaultSettle      = time.Second
	defaultRetryPeriod = 2 * time.Second
	// maxSettleFactor bounds how long churn can postpone a reassignment.
	maxSettleFactor = 5
	// etcdCleanupTimeout bounds a release or a revoke made after the
	// context that asked for it ended.
	etcdCleanupTimeout = 5 * time.Second
)

// Sharder keeps this replica a member and drives the namespaces assigned to it.
type Sharder struct {
	cfg           Config
	ttl           int // seconds
	membersPrefix string
	shardsPrefix  string
	// kick asks the current term to reconcile (a namespace was wanted or
	// forgotten, or a shard ended). Buffered by one: kicks coalesce.
	kick    chan struct{}
	running atomic.Bool

	mu     sync.Mutex
	wanted map[string]struct{}
	// shards are this term's namespaces: campaigning, driving or stopping.
	shards map[string]*shard
	// lease is the current session's lease, 0 between sessions.
	lease clientv3.LeaseID
}

// New checks cfg and returns a Sharder; Run starts it.
func New(cfg Config) (*Sharder, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("sharding: no etcd client")
	case strings.Trim(cfg.Prefix, "/") == "":
		return nil, errors.New("sharding: an etcd prefix is required")
	case cfg.Identity == "" || strings.Contains(cfg.Identity, "/"):
		return nil, fmt.Errorf("sharding: identity %q must be non-empty and contain no \"/\"", cfg.Identity)
	case cfg.TTL <= 0:
		return nil, fmt.Errorf("sharding: lease TTL %s must be positive", cfg.TTL)
	}
	if cfg.Settle <= 0 {
		cfg.Settle = defaultSettle
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = defaultRetryPeriod
	}
	prefix := strings.TrimRight(cfg.Prefix, "/")
	return &Sharder{
		cfg:           cfg,
		ttl:           max(int(cfg.TTL.Round(time.Second)/time.Second), 1),
		membersPrefix: prefix + "/members/",
		shardsPrefix:  prefix + "/datacenters/",
		kick:          make(chan struct{}, 1),
		wanted:        map[string]struct{}{},
		shards:        map[string]*shard{},
	}, nil
}

// Run keeps this replica a member and drives the namespaces assigned to it,
// calling acquire for each one it wins, until ctx ends; then it stops every
// shard, resigns and revokes its lease, and returns. If the session is lost
// (the lease expired while the process was paused or cut off from etcd) it
// stops every shard first, then opens a new session and rejoins. Run may be
// called again after it returned, but not twice at once.
func (s *Sharder) Run(ctx context.Context, acquire Acquire) {
	logger := klog.FromContext(ctx).WithValues("identity", s.cfg.Identity)
	if !s.running.CompareAndSwap(false, true) {
		logger.Error(nil, "Datacenter sharding is already running; this second Run does nothing")
		return
	}
	defer s.running.Store(false)
	for ctx.Err() == nil {
		err := s.runTerm(ctx, logger, acquire)
		if ctx.Err() != nil {
			break
		}
		logger.Error(err, "This replica stopped driving its datacenters; it rejoins shortly")
		select {
		case <-ctx.Done():
		case <-time.After(wait.Jitter(s.cfg.RetryPeriod, 0.5)):
		}
	}
	logger.Info("Stopped driving datacenters")
}

// Want tells the sharder that namespace ns exists (it has a Datacenter or
// Jobs), so some replica must drive it. Idempotent and cheap: call it from
// informer handlers.
func (s *Sharder) Want(ns string) {
	if ns == "" {
		return
	}
	s.mu.Lock()
	_, had := s.wanted[ns]
	if !had {
		s.wanted[ns] = struct{}{}
	}
	s.mu.Unlock()
	if !had {
		s.notify()
	}
}

// Forget tells the sharder that namespace ns needs no driver any more (no
// Datacenter, no unfinished Jobs): this replica stops driving or campaigning
// for it. Want brings it back.
func (s *Sharder) Forget(ns string) {
	s.mu.Lock()
	_, had := s.wanted[ns]
	delete(s.wanted, ns)
	s.mu.Unlock()
	if had {
		s.notify()
	}
}

// Owns reports, from memory, whether this replica drives ns now: it won the
// election key and has not been told to stop. For routing informer events;
// before acting, ask Leading.
func (s *Sharder) Owns(ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shards[ns]
	return sh != nil && sh.driving && sh.ctx.Err() == nil
}

// Owners returns the namespaces this replica drives now, sorted.
func (s *Sharder) Owners() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for ns, sh := range s.shards {
		if sh.driving && sh.ctx.Err() == nil {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// Leading returns nil if this replica still holds ns's election key, checked
// on etcd at the time of the call: controllers ask it right before a submit,
// a cancel or a status write, so a replica that was paused past its lease, or
// whose datacenter moved, finds out before acting. When the key is gone it
// stops the shard (its acquire context ends) and returns an error wrapping
// ErrNotDriving. If etcd cannot be asked it returns that error and stops
// nothing: not knowing is not a "no", but it is no "yes" either.
func (s *Sharder) Leading(ctx context.Context, ns string) error {
	s.mu.Lock()
	sh := s.shards[ns]
	driving := sh != nil && sh.driving
	var key string
	var rev int64
	if driving {
		key, rev = sh.key, sh.rev
	}
	s.mu.Unlock()
	if !driving || sh.ctx.Err() != nil {
		return fmt.Errorf("datacenter %s: %w", ns, ErrNotDriving)
	}
	resp, err := s.cfg.Client.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("checking on etcd that this replica still drives datacenter %s: %w", ns, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev {
		klog.FromContext(ctx).Info("This replica's election key for the datacenter is gone from etcd (its lease expired or was revoked); it stops driving it",
			"namespace", ns, "identity", s.cfg.Identity, "key", key)
		sh.cancel()
		return fmt.Errorf("datacenter %s: %w", ns, ErrNotDriving)
	}
	if sh.ctx.Err() != nil { // told to stop while etcd answered
		return fmt.Errorf("datacenter %s: %w", ns, ErrNotDriving)
	}
	return nil
}

// Fence returns the condition under which a write to etcd may be made on
// behalf of ns's driver: this replica's election key for ns still exists,
// as created when it won. Put into the write's own transaction (If), it
// makes a write from a replica that lost the key between a Leading check
// and the write fail instead of landing after its successor's.
func (s *Sharder) Fence(ns string) ([]clientv3.Cmp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shards[ns]
	if sh == nil || !sh.driving || sh.ctx.Err() != nil {
		return nil, fmt.Errorf("datacenter %s: %w", ns, ErrNotDriving)
	}
	return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(sh.key), "=", sh.rev)}, nil
}

// notify asks the running term, if any, to reconcile.
func (s *Sharder) notify() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// currentLease is the lease of the current session, 0 between sessions.
func (s *Sharder) currentLease() clientv3.LeaseID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}
