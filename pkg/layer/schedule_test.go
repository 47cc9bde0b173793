package layer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

func TestSchedule(t *testing.T) {
	// Without a cache: by SizeHint, unknown sizes last, ties in order.
	specs := []Spec{{SizeHint: 1}, {SizeHint: 100}, {}, {SizeHint: 50}, {SizeHint: 100}, {}}
	if diff := cmp.Diff([]int{1, 4, 3, 0, 2, 5}, schedule(specs)); diff != "" {
		t.Errorf("schedule() (-want +got):\n%s", diff)
	}

	// With a cache: a layer the cache will spare costs its hashing only,
	// one it will not costs compressing, whatever its SizeHint says.
	store := t.TempDir()
	var paths []descriptor.Path
	for i, size := range []int{3 << 20, 2 << 20} {
		p := filepath.Join(store, fmt.Sprintf("%032d-p", i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, descriptor.Path{Path: p})
	}
	c, err := OpenCache(t.TempDir(), CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DescribeAll(context.Background(), []Spec{{Paths: paths[:1], Cache: c}}); err != nil {
		t.Fatal(err)
	}
	specs = []Spec{
		{Paths: paths[:1], Cache: c, SizeHint: 1},       // cached: about 3 MiB to hash
		{Paths: paths[1:], Cache: c, SizeHint: 1},       // new: 1 byte to compress, says the hint
		{Paths: paths[1:], Cache: c, SizeHint: 1 << 20}, // new: 1 MiB to compress
	}
	if diff := cmp.Diff([]int{2, 0, 1}, schedule(specs)); diff != "" {
		t.Errorf("schedule() with a cache (-want +got):\n%s", diff)
	}
}
