package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestDo(t *testing.T) {
	var seen [100]atomic.Bool
	if err := Do(context.Background(), len(seen), func(_ context.Context, i int) error {
		if seen[i].Swap(true) {
			t.Errorf("item %d ran twice", i)
		}
		return nil
	}); err != nil {
		t.Fatalf("Do() = %v", err)
	}
	for i := range seen {
		if !seen[i].Load() {
			t.Errorf("Do() never ran item %d", i)
		}
	}
}

func TestDoStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var ran atomic.Int64
	err := Do(context.Background(), 10000, func(ctx context.Context, i int) error {
		ran.Add(1)
		if i == 0 {
			return boom
		}
		<-ctx.Done() // no item after the first finishes before the failure cancels it
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Do() = %v, want %v", err, boom)
	}
	if n := ran.Load(); n >= 10000 {
		t.Errorf("Do() ran all %d items after the first error", n)
	}
}

func TestDoCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Do(ctx, 5, func(context.Context, int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Do(cancelled) = %v, want context.Canceled", err)
	}
}
