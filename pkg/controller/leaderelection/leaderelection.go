// Package leaderelection makes sure that of several Stargate replicas on one
// etcd only one runs the controllers at a time. It campaigns on etcd itself
// (go.etcd.io/etcd/client/v3/concurrency): a replica leads while the lease of
// its session is alive, and a replica that was paused or cut off past the
// lease's TTL loses it. What such a replica might still do in the moment
// before it notices cannot run a datacenter job twice: every submit carries
// the Job's UID as its idempotency key and every status write its
// resourceVersion.
package leaderelection

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/controller/metrics"
)

// Config says where and how to campaign.
type Config struct {
	Client *clientv3.Client
	// Key is the etcd prefix of the election.
	Key string
	// Identity names this replica in the election (and in logs).
	Identity string
	// TTL is how long a leader that stops renewing keeps the lead (rounded
	// to seconds; etcd's minimum applies).
	TTL time.Duration
	// RetryPeriod is the pause after a failed campaign (default 2s).
	RetryPeriod time.Duration
}

// Lead is what a leader runs: until ctx ends, which it does when the lead is
// lost. Leading returns nil while this replica still holds the lead, checked
// on etcd at the time of the call: a controller asks it right before an
// action with effects outside the API (a datacenter submit), so a leader that
// was paused and lost its lease finds out before acting, not a keep-alive
// later. Lead must return only after everything it started has stopped.
type Lead func(ctx context.Context, leading func(context.Context) error)

// ErrNotLeading is what leading returns once the lead is lost.
var ErrNotLeading = errors.New("this replica no longer holds the controllers' leader election")

// Run campaigns until ctx is done, calling lead each time this replica wins.
func Run(ctx context.Context, cfg Config, lead Lead) {
	logger := klog.FromContext(ctx).WithValues("election", cfg.Key, "identity", cfg.Identity)
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	ttl := max(int(cfg.TTL.Round(time.Second)/time.Second), 1)
	for ctx.Err() == nil {
		if err := term(ctx, cfg, ttl, logger, lead); err != nil && ctx.Err() == nil {
			logger.Error(err, "Leader election failed; campaigning again")
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait.Jitter(cfg.RetryPeriod, 0.5)):
		}
	}
}

// term is one session: campaign, lead until the session or ctx ends, resign.
func term(ctx context.Context, cfg Config, ttl int, logger klog.Logger, lead Lead) error {
	session, err := concurrency.NewSession(cfg.Client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer func() {
		// Revoke the lease with a context of its own: ctx may be done
		// (shutting down), and a lease left behind would hold the election
		// key until its TTL.
		session.Orphan()
		revokeCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer done()
		_, _ = cfg.Client.Revoke(revokeCtx, session.Lease())
	}()
	// Leading ends with the session (its lease expired or was revoked) or ctx.
	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done():
			logger.Info("Lost the leader lease")
		case <-leadCtx.Done():
		}
		cancel()
	}()
	election := concurrency.NewElection(session, cfg.Key)
	logger.Info("Campaigning for leadership")
	if err := election.Campaign(leadCtx, cfg.Identity); err != nil {
		return err
	}
	logger.Info("Became the leader")
	// The election key lives as long as the session's lease: if it is gone,
	// so is the lead, whether or not the keep-alive has noticed yet.
	key := election.Key()
	leading := func(ctx context.Context) error {
		resp, err := cfg.Client.Get(ctx, key, clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count == 0 || leadCtx.Err() != nil {
			cancel()
			return ErrNotLeading
		}
		return nil
	}
	metrics.Leader.Set(1)
	lead(leadCtx, leading)
	metrics.Leader.Set(0)
	logger.Info("Stopped leading")
	// Resigning lets a successor take over at once instead of after the TTL.
	resignCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	if err := election.Resign(resignCtx); err != nil && ctx.Err() == nil {
		logger.Error(err, "Could not resign; the lease will expire by itself")
	}
	return nil
}
