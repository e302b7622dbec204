package controller

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestAStuckDatacenterDoesNotHoldUpAnother: every worker of dc-slow hangs in
// its datacenter call; dc-fast's keys are still processed.
func TestAStuckDatacenterDoesNotHoldUpAnother(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	done := map[string]bool{}
	fastDone := make(chan struct{})
	shards := NewShards("test", 2, func(ctx context.Context, key string) (time.Duration, error) {
		ns := key[:len("dc-fast")]
		if ns == "dc-slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return 0, nil
		}
		mu.Lock()
		defer mu.Unlock()
		done[key] = true
		if len(done) == 20 {
			close(fastDone)
		}
		return 0, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		shards.Run(ctx)
		close(stopped)
	}()
	for i := range 10 {
		shards.Add("dc-slow/job-" + string(rune('a'+i)))
	}
	for i := range 20 {
		shards.Add("dc-fast/job-" + string(rune('a'+i)))
	}
	select {
	case <-fastDone:
	case <-time.After(10 * time.Second):
		t.Fatal("dc-fast's Jobs waited behind dc-slow's")
	}
	close(release)
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
