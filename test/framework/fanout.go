package framework

import (
	"context"
	"sync"
	"sync/atomic"
)

// FanOut calls do(i) for every i in [0, n) from workers goroutines and
// returns the first error (the others stop taking work then).
func FanOut(ctx context.Context, n, workers int, do func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || failed.Load() {
					return
				}
				if err := do(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
