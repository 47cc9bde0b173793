package layer_test

import (
	"io"
	"testing"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// BenchmarkDescribe measures describing a generated closure of 40 paths
// (about 40 MiB); bytes/s is of the uncompressed tar.
func BenchmarkDescribe(b *testing.B) {
	paths := mkStore(b, 40, 768<<10)
	for _, alg := range []string{descriptor.None, descriptor.Gzip, descriptor.Zstd} {
		b.Run(alg, func(b *testing.B) {
			for b.Loop() {
				l, err := layer.Describe(ctx(b), layer.Spec{Paths: paths, Compression: alg})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(l.UncompressedSize())
			}
		})
	}
}

// BenchmarkOpen measures serving the blob of the same closure.
func BenchmarkOpen(b *testing.B) {
	paths := mkStore(b, 40, 768<<10)
	for _, alg := range []string{descriptor.None, descriptor.Gzip} {
		l, err := layer.Describe(ctx(b), layer.Spec{Paths: paths, Compression: alg})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg, func(b *testing.B) {
			b.SetBytes(l.UncompressedSize())
			for b.Loop() {
				r, err := l.Compressed(ctx(b))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
