// Package parallel provides a bounded worker loop over indexed work items.
package parallel

import (
	"context"
	"runtime"
	"sync"
)

// Do runs fn(ctx, i) for every i in [0,n) on runtime.NumCPU() goroutines.
// The first error cancels ctx for the others and is returned; a caller that
// wants every item tried records its errors itself and returns nil.
func Do(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for range min(runtime.NumCPU(), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() {
						firstErr = err
						cancel()
					})
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
