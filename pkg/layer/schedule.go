package layer

import (
	"sort"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Relative cost of describing a byte with compression, against hashing it
// only, from the benchmark closure (bench/README.md): hashing and gzip
// level 5 take about 4.5 times the CPU time of hashing alone; zstd level 3
// is about twice as fast as that gzip. Only the order matters.
var compressCost = map[string]int64{descriptor.Gzip: 4, descriptor.Zstd: 2, descriptor.None: 1}

// schedule returns the order in which DescribeAll starts specs: the most
// costly first, so that a large layer, or the one layer a cache will not
// spare from compressing, does not start last while the other workers
// idle. A spec's cost is its expected tar size (from its cache's hint,
// else its SizeHint) times the cost of compressing it, unless the cache
// is expected to spare that. Specs without an estimate keep their order,
// after the others.
func schedule(specs []Spec) []int {
	cost := make([]int64, len(specs))
	for i, s := range specs {
		cost[i] = s.Cache.estimate(s)
	}
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return cost[order[a]] > cost[order[b]] })
	return order
}

// estimate is the expected cost of describing spec with c (which may be
// nil): see schedule.
func (c *Cache) estimate(spec Spec) int64 {
	alg := spec.Compression
	if alg == "" {
		alg = DefaultCompression
	}
	factor, size := compressCost[alg], spec.SizeHint
	if factor == 0 {
		factor = 1
	}
	if c != nil {
		if comp, err := compressorFor(alg); err == nil {
			if p := c.plan(spec, comp); !p.compressNow {
				factor, size = 1, p.expectedTar.Size
			} else if tar, ok := c.hintFor(specKey(spec)); ok {
				size = tar.Size
			}
		}
	}
	return size * factor
}
