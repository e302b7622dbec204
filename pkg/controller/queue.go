// Package controller holds what Stargate's controllers share.
package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/controller/metrics"
)

// SyncFunc moves one object a step forward and says when to look again (0:
// on its next change only); an error is retried with rate limiting.
type SyncFunc func(ctx context.Context, key string) (time.Duration, error)

// Queue is a rate-limited workqueue and the loop that drains it into a SyncFunc.
type Queue struct {
	name  string
	queue workqueue.TypedRateLimitingInterface[string]
	sync  SyncFunc
}

// NewQueue returns a named queue feeding sync.
func NewQueue(name string, sync SyncFunc) *Queue {
	return &Queue{name: name, sync: sync, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

// Enqueue adds an informer object by its namespace/name key.
func (q *Queue) Enqueue(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		q.queue.Add(key)
	}
}

// Add adds a key.
func (q *Queue) Add(key string) { q.queue.Add(key) }

// AddAfter adds a key once d has passed.
func (q *Queue) AddAfter(key string, d time.Duration) { q.queue.AddAfter(key, d) }

// Len is the number of keys waiting.
func (q *Queue) Len() int { return q.queue.Len() }

// Run waits for the caches, then runs workers until ctx is done.
func (q *Queue) Run(ctx context.Context, workers int, synced ...cache.InformerSynced) {
	defer utilruntime.HandleCrash()
	defer q.queue.ShutDown()
	logger := klog.FromContext(ctx).WithValues("controller", q.name)
	logger.Info("Starting controller")
	if !cache.WaitForNamedCacheSync(q.name, ctx.Done(), synced...) {
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait.UntilWithContext(ctx, func(ctx context.Context) {
				for q.processNext(klog.NewContext(ctx, logger)) {
				}
			}, time.Second)
		}()
	}
	<-ctx.Done()
	logger.Info("Stopping controller")
	q.queue.ShutDown()
	wg.Wait()
}

func (q *Queue) processNext(ctx context.Context) bool {
	key, quit := q.queue.Get()
	if quit {
		return false
	}
	defer q.queue.Done(key)
	after, err := q.syncRecovering(ctx, key)
	switch {
	case err != nil:
		klog.FromContext(ctx).Error(err, "Sync failed; will retry", "key", key)
		q.queue.AddRateLimited(key)
	case after > 0:
		q.queue.Forget(key)
		q.queue.AddAfter(key, after)
	default:
		q.queue.Forget(key)
	}
	return true
}

// syncRecovering runs one sync, turning a panic into an error retried with
// backoff: one bad object must not take the API server (which runs the
// controllers in its process) down with it, again at every restart.
func (q *Queue) syncRecovering(ctx context.Context, key string) (after time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sync of %s panicked: %v\n%s", key, r, debug.Stack())
			metrics.SyncPanics.Inc()
		}
	}()
	return q.sync(ctx, key)
}

// ContinueAfterExpiry returns, for a paged list whose continue token expired
// (a long pass outlived etcd's compaction), the token the server gave to go
// on from there; false for any other error.
func ContinueAfterExpiry(err error) (string, bool) {
	var status apierrors.APIStatus
	if apierrors.IsResourceExpired(err) && errors.As(err, &status) && status.Status().ListMeta.Continue != "" {
		return status.Status().ListMeta.Continue, true
	}
	return "", false
}
