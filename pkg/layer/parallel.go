package layer

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// DescribeAll describes every spec on runtime.NumCPU() workers. Results are
// in input order; the first error cancels the rest and is returned.
func DescribeAll(ctx context.Context, specs []Spec) ([]descriptor.Layer, error) {
	out := make([]descriptor.Layer, len(specs))
	err := parallel(ctx, len(specs), func(ctx context.Context, i int) error {
		l, err := Describe(ctx, specs[i])
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		out[i] = l
		return nil
	})
	if err != nil {
		// Leave nothing half-done: tars of the layers that did finish
		// would describe a build that failed.
		for i, l := range out {
			if l.Tar != "" && l.Tar == specs[i].TarFile {
				os.Remove(l.Tar)
			}
		}
		return nil, err
	}
	return out, nil
}

// parallel runs fn(ctx, i) for every i in [0,n) on runtime.NumCPU()
// goroutines. The first error cancels ctx for the others and is returned.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := min(runtime.NumCPU(), n)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for range workers {
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
