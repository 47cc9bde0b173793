package publish

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.podman.io/image/v5/types"
)

// stallSlots is how many slices the watchdog's sliding window has: a stall
// is noticed at most StallTimeout/stallSlots late.
const stallSlots = 10

// stallError is the cause an attempt is cancelled with when it stalls.
type stallError struct{ timeout time.Duration }

func (e stallError) Error() string {
	return fmt.Sprintf("%v: for %v no blob started or finished and less than %d bytes a second moved", ErrStalled, e.timeout, StallRate)
}

func (e stallError) Unwrap() error { return ErrStalled }

// watchdog cancels an attempt that stalls: for its timeout, no blob
// started, was skipped or finished, and fewer than StallRate bytes a
// second of blob data moved. It learns both from containers/image's
// progress events, so it sees a connection that hangs (no event at all)
// and one that trickles (events with a few bytes) alike.
type watchdog struct {
	timeout time.Duration
	cancel  context.CancelCauseFunc
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	since   time.Time // when the window started: the start, or the last blob event
	buckets [stallSlots]uint64
	slot    int
}

// startWatchdog watches until stopped, calling cancel with a stallError
// when the attempt stalls.
func startWatchdog(timeout time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{timeout: timeout, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}), since: time.Now()}
	go w.run()
	return w
}

func (w *watchdog) run() {
	defer close(w.done)
	tick := time.NewTicker(w.timeout / stallSlots)
	defer tick.Stop()
	minBytes := uint64(StallRate * w.timeout.Seconds())
	for {
		select {
		case <-w.stop:
			return
		case now := <-tick.C:
			w.mu.Lock()
			var moved uint64
			for _, b := range w.buckets {
				moved += b
			}
			stalled := now.Sub(w.since) >= w.timeout && moved < minBytes
			w.slot = (w.slot + 1) % stallSlots
			w.buckets[w.slot] = 0
			w.mu.Unlock()
			if stalled {
				w.cancel(stallError{timeout: w.timeout})
				return
			}
		}
	}
}

// event accounts for one progress event.
func (w *watchdog) event(p types.ProgressProperties) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch p.Event {
	case types.ProgressEventNewArtifact, types.ProgressEventSkipped, types.ProgressEventDone:
		// A blob request completed: the connection works. Start over.
		w.since = time.Now()
		w.buckets = [stallSlots]uint64{}
	case types.ProgressEventRead:
		w.buckets[w.slot] += p.OffsetUpdate
	}
}

// halt stops the watchdog and waits for it.
func (w *watchdog) halt() {
	close(w.stop)
	<-w.done
}
