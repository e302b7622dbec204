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

// Driven shards run a namespace's queue only under Drive: keys of other
// namespaces are dropped, and a namespace's keys stop being taken once its
// Drive ends.
func TestDrivenShards(t *testing.T) {
	var mu sync.Mutex
	synced := map[string]int{}
	s := NewDrivenShards("test", 1, func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		synced[key]++
		mu.Unlock()
		return 0, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	s.Add("dc-east/before") // not driven yet: dropped
	driveCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		s.Drive(driveCtx, "dc-east", func() { s.Add("dc-east/resynced") })
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := synced["dc-east/resynced"]
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key enqueued when Drive began was never synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Add("dc-west/other") // another replica drives dc-west
	stop()
	<-done
	s.Add("dc-east/after") // no longer driven
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, key := range []string{"dc-east/before", "dc-west/other", "dc-east/after"} {
		if synced[key] != 0 {
			t.Errorf("%s was synced although its namespace was not driven", key)
		}
	}
}
