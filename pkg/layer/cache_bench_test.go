package layer_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// BenchmarkCacheDesigns compares the two ways Describe can use a Cache on
// 8 layers of about 5 MiB each (gzip), bytes/s of tar:
//
//   - hinted (the one Describe uses): a hint says which tar a spec gave
//     last time; a layer expected in the cache is only hashed, others are
//     hashed and compressed in one stream;
//   - twoPass: every layer is hashed first and, on a miss, streamed again
//     to compress it.
//
// "none" is the same layers with --compression none, "nocache" gzip
// without a cache; "cold" starts from an empty cache, "warm" from a full
// one, and "1changed" from a full one with one layer's store path new.
func BenchmarkCacheDesigns(b *testing.B) {
	paths := mkStore(b, 9, 4<<20)
	base, changed := paths[:8], append(append([]descriptor.Path(nil), paths[:7]...), paths[8])
	var cpu time.Duration
	run := func(b *testing.B, specs []layer.Spec) {
		before := cpuTime()
		var n int64
		for _, s := range describeAll(b, specs) {
			n += s.UncompressedSize
		}
		b.SetBytes(n)
		cpu += cpuTime() - before
	}
	// CPU time hardly moves when other processes compete for the cores:
	// report it per op as well.
	report := func(b *testing.B) {
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
		cpu = 0
	}
	b.Run("none", func(b *testing.B) {
		for b.Loop() {
			run(b, oneLayerEach(base, descriptor.None, nil))
		}
		report(b)
	})
	b.Run("nocache", func(b *testing.B) {
		for b.Loop() {
			run(b, oneLayerEach(base, descriptor.Gzip, nil))
		}
		report(b)
	})
	for _, twoPass := range []bool{false, true} {
		name := "hinted"
		if twoPass {
			name = "twoPass"
		}
		open := func(b *testing.B, dir string) *layer.Cache {
			c, _ := openCache(b, dir, 0)
			c.SetTwoPass(twoPass)
			return c
		}
		b.Run(name+"/cold", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				c := open(b, b.TempDir())
				b.StartTimer()
				run(b, oneLayerEach(base, descriptor.Gzip, c))
			}
			report(b)
		})
		b.Run(name+"/warm", func(b *testing.B) {
			dir := b.TempDir()
			describeAll(b, oneLayerEach(base, descriptor.Gzip, open(b, dir)))
			for b.Loop() {
				run(b, oneLayerEach(base, descriptor.Gzip, open(b, dir)))
			}
			report(b)
		})
		b.Run(name+"/1changed", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				dir := b.TempDir()
				describeAll(b, oneLayerEach(base, descriptor.Gzip, open(b, dir)))
				c := open(b, dir)
				b.StartTimer()
				run(b, oneLayerEach(changed, descriptor.Gzip, c))
				if s := c.Stats(); s.Compressed != 1 {
					b.Fatalf("Stats() = %+v, want 1 compressed", s)
				}
			}
			report(b)
		})
	}
}

// cpuTime is the user and system time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
