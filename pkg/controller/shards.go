package controller

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Shards is one Queue per datacenter (namespace), each with its own workers:
// a datacenter that is slow or down ties up only its own workers, so Jobs in
// every other datacenter go on at full speed.
//
// Shards made by NewDrivenShards run a namespace's queue only while Drive
// runs for it (this replica drives that datacenter); keys of any other
// namespace are dropped: the replica driving it has them.
type Shards struct {
	name    string
	workers int
	sync    SyncFunc
	driven  bool

	mu     sync.Mutex
	queues map[string]*Queue
	// ctx is set once Run has seen the caches synced; shards made after that
	// start at once, those made before start with Run.
	ctx context.Context
	wg  sync.WaitGroup
}

// NewShards returns shards named name-<namespace>, workers each, feeding sync.
func NewShards(name string, workers int, sync SyncFunc) *Shards {
	return &Shards{name: name, workers: workers, sync: sync, queues: map[string]*Queue{}}
}

// NewDrivenShards returns shards whose queues run only under Drive.
func NewDrivenShards(name string, workers int, sync SyncFunc) *Shards {
	s := NewShards(name, workers, sync)
	s.driven = true
	return s
}

// Drive runs ns's queue until ctx is done, calling then once the queue
// takes keys (to enqueue what the namespace holds: keys that came while
// another replica drove it were dropped), and returns once its workers have
// stopped. Only for shards made by NewDrivenShards.
func (s *Shards) Drive(ctx context.Context, ns string, then func()) {
	q := NewQueue(s.name+"-"+ns, s.sync)
	s.mu.Lock()
	s.queues[ns] = q
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.queues[ns] == q {
			delete(s.queues, ns)
		}
		s.mu.Unlock()
	}()
	then()
	q.Run(ctx, s.workers)
}

// Enqueue adds an informer object by its namespace/name key.
func (s *Shards) Enqueue(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		s.Add(key)
	}
}

// Add adds a namespace/name key to its namespace's queue.
func (s *Shards) Add(key string) {
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return
	}
	if q := s.shard(ns); q != nil {
		q.Add(key)
	}
}

// AddAfter adds a namespace/name key to its namespace's queue once d has passed.
func (s *Shards) AddAfter(key string, d time.Duration) {
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return
	}
	if q := s.shard(ns); q != nil {
		q.AddAfter(key, d)
	}
}

func (s *Shards) shard(ns string) *Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[ns]
	if !ok && s.driven {
		return nil // not driven here
	}
	if !ok {
		q = NewQueue(s.name+"-"+ns, s.sync)
		s.queues[ns] = q
		if s.ctx != nil {
			s.start(q)
		}
	}
	return q
}

// start runs q's workers; s.mu is held.
func (s *Shards) start(q *Queue) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		q.Run(s.ctx, s.workers)
	}()
}

// Run waits for the caches, runs every shard until ctx is done, then waits
// for their workers to stop.
func (s *Shards) Run(ctx context.Context, synced ...cache.InformerSynced) {
	if !cache.WaitForNamedCacheSync(s.name, ctx.Done(), synced...) {
		return
	}
	klog.FromContext(ctx).Info("Starting controller", "controller", s.name)
	s.mu.Lock()
	s.ctx = ctx
	if !s.driven { // driven queues run under Drive
		for _, q := range s.queues {
			s.start(q)
		}
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.wg.Wait()
}
