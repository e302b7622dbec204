package controller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestAPanickingSyncIsRetriedNotFatal: a sync that panics (a bug, one bad
// object) is turned into an error and retried; the process goes on.
func TestAPanickingSyncIsRetriedNotFatal(t *testing.T) {
	var calls atomic.Int32
	done := make(chan struct{})
	q := NewQueue("test-panics", func(ctx context.Context, key string) (time.Duration, error) {
		if calls.Add(1) == 1 {
			var nothing *struct{ x int }
			_ = nothing.x // nil dereference
		}
		close(done)
		return 0, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx, 1)
	q.Add("dc-west/j1")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the key was not retried after its sync panicked")
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d syncs, want 2 (the panic, then the retry)", n)
	}
}
