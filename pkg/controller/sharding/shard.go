package sharding

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// shard is one namespace of this term: campaigning for its election key,
// driving it, or stopping.
type shard struct {
	ns     string
	ctx    context.Context
	cancel context.CancelFunc

	// Under Sharder.mu:
	stopping bool   // reconcile told it to stop
	driving  bool   // won, and acquire has not returned
	key      string // the election key, once won
	rev      int64  // its create revision, once won
}

// stop ends the shard's context (s.mu held).
func (sh *shard) stop() {
	sh.stopping = true
	sh.cancel()
}

// errStaleWin is a campaign that ended with this replica's key gone.
var errStaleWin = errors.New("this replica's election key vanished as it won (its lease expired)")

// startShard starts driving ns (s.mu held; only run's goroutine calls it, so
// no shard starts after close began waiting).
func (t *term) startShard(ns string) {
	ctx, cancel := context.WithCancel(t.ctx)
	sh := &shard{ns: ns, ctx: ctx, cancel: cancel}
	t.s.shards[ns] = sh
	t.shards.Add(1)
	go t.runShard(sh)
}

// runShard campaigns for ns, drives it while it holds the key, and releases
// the key once acquire has returned. A shard that ends without being told to
// (a failed campaign, an acquire that returned early) pauses first, so a
// persistent error does not spin.
func (t *term) runShard(sh *shard) {
	defer t.shards.Done()
	logger := t.logger.WithValues("namespace", sh.ns)
	prefix := t.s.shardsPrefix + sh.ns + "/"
	key := fmt.Sprintf("%s%x", prefix, t.session.Lease())

	rev, err := t.campaign(sh.ctx, prefix, key)
	if err == nil {
		err = t.drive(sh, key, rev, logger)
	}
	if err != nil && sh.ctx.Err() == nil {
		logger.Error(err, "Could not take the datacenter; trying again")
	}
	// Whatever happened, the key (which may exist even after a failed
	// campaign) goes now: the work under it has stopped.
	t.release(key, logger)
	if sh.ctx.Err() == nil {
		select {
		case <-sh.ctx.Done():
		case <-time.After(wait.Jitter(t.s.cfg.RetryPeriod, 0.5)):
		}
	}
	sh.cancel()
	t.s.mu.Lock()
	if t.s.shards[sh.ns] == sh {
		delete(t.s.shards, sh.ns)
	}
	t.s.mu.Unlock()
	t.s.notify()
}

// campaign puts this session's key under prefix, unless it is there already,
// and returns its create revision once every older key under prefix (an
// earlier holder's or waiter's) is gone: concurrency.Election's protocol,
// with every etcd call bounded by ctx (Election.Campaign resigns on the
// client's own context when ctx ends, which blocks while etcd is down).
func (t *term) campaign(ctx context.Context, prefix, key string) (int64, error) {
	client := t.s.cfg.Client
	resp, err := client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, t.s.cfg.Identity, clientv3.WithLease(t.session.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, err
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return 0, errStaleWin
		}
		rev = kvs[0].CreateRevision
	}
	for {
		older, err := client.Get(ctx, prefix, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))...)
		if err != nil {
			return 0, err
		}
		if len(older.Kvs) == 0 {
			return rev, nil
		}
		if err := waitDelete(ctx, client, string(older.Kvs[0].Key), older.Header.Revision); err != nil {
			return 0, err
		}
	}
}

// waitDelete returns once key is deleted after revision rev.
func waitDelete(ctx context.Context, client *clientv3.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range client.Watch(wctx, key, clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("lost the watch on %s", key)
}

// drive checks that the won key is still this session's, then runs acquire
// until the shard's context ends.
func (t *term) drive(sh *shard, key string, rev int64, logger klog.Logger) error {
	// The session may have been lost while the campaign waited: a win
	// counts only if the key is still there, as it was put.
	resp, err := t.s.cfg.Client.Get(sh.ctx, key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev || clientv3.LeaseID(resp.Kvs[0].Lease) != t.session.Lease() {
		return errStaleWin
	}
	t.s.mu.Lock()
	if sh.ctx.Err() != nil {
		t.s.mu.Unlock()
		return nil
	}
	sh.driving, sh.key, sh.rev = true, key, rev
	t.s.mu.Unlock()

	DatacenterDriven.WithLabelValues(sh.ns).Set(1)
	logger.Info("Driving the datacenter")
	start := time.Now()
	t.acquire(sh.ctx, sh.ns)
	t.s.mu.Lock()
	sh.driving = false
	t.s.mu.Unlock()
	DatacenterDriven.DeleteLabelValues(sh.ns)
	if sh.ctx.Err() == nil {
		logger.Error(nil, "The datacenter's controllers returned while this replica still drives it; releasing it, then campaigning again",
			"drove", time.Since(start).Round(time.Millisecond))
		return nil
	}
	logger.Info("Stopped driving the datacenter", "drove", time.Since(start).Round(time.Millisecond))
	return nil
}

// release deletes this session's election key, so the next owner in line
// takes over at once rather than after the TTL. It retries until it succeeds
// or the term ends: then the lease is revoked, or has expired, and takes the
// key with it.
func (t *term) release(key string, logger klog.Logger) {
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 6, Cap: 3 * time.Second}
	for {
		ctx, done := context.WithTimeout(context.WithoutCancel(t.ctx), etcdCleanupTimeout)
		_, err := t.s.cfg.Client.Delete(ctx, key)
		done()
		if err == nil || t.ctx.Err() != nil {
			return
		}
		logger.Error(err, "Could not release the datacenter's election key; retrying (the next owner waits until then)")
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}
