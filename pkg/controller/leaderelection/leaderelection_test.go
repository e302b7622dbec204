package leaderelection

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"stargate.io/stargate/pkg/embeddedetcd"
)

type candidate struct {
	name    string
	leads   atomic.Int32 // terms won
	mu      sync.Mutex
	leading func(context.Context) error
	active  atomic.Bool
}

func TestOneLeaderAtATimeAndTakeoverAfterLeaseLoss(t *testing.T) {
	etcd, err := embeddedetcd.Start(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	var overlaps atomic.Int32
	var running sync.WaitGroup
	candidates := []*candidate{{name: "a"}, {name: "b"}}
	for _, c := range candidates {
		running.Add(1)
		go func() {
			defer running.Done()
			Run(ctx, Config{Client: client, Key: "/test/election", Identity: c.name, TTL: 2 * time.Second, RetryPeriod: 100 * time.Millisecond},
				func(ctx context.Context, leading func(context.Context) error) {
					for _, other := range candidates {
						if other != c && other.active.Load() {
							overlaps.Add(1)
						}
					}
					c.mu.Lock()
					c.leading = leading
					c.mu.Unlock()
					c.active.Store(true)
					c.leads.Add(1)
					<-ctx.Done()
					c.active.Store(false)
				})
		}()
	}
	leader := func() *candidate {
		var l *candidate
		err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			for _, c := range candidates {
				if c.active.Load() {
					l = c
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatal("nobody became the leader")
		}
		return l
	}
	first := leader()
	first.mu.Lock()
	leading := first.leading
	first.mu.Unlock()
	if err := leading(context.Background()); err != nil {
		t.Fatalf("the leader does not know it leads: %v", err)
	}

	// Revoke the leader's lease, as etcd does when a paused leader's TTL runs
	// out: it must learn at its next check, before the keep-alive tells it.
	resp, err := client.Get(context.Background(), "/test/election", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("no election key: %v", err)
	}
	if _, err := client.Revoke(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if err := leading(context.Background()); !errors.Is(err, ErrNotLeading) {
		t.Errorf("after losing its lease the old leader's check says %v, want ErrNotLeading", err)
	}
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		for _, c := range candidates {
			if c != first && c.active.Load() && !first.active.Load() {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("the other candidate did not take over")
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("a leader started while another was still leading (%d times)", n)
	}
	cancel()
	running.Wait() // Run returns once ctx is done
	for _, c := range candidates {
		if c.active.Load() {
			t.Errorf("%s still leads after its context ended", c.name)
		}
	}
}
