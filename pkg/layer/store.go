package layer

import (
	"context"
	"fmt"
	"io"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// storeLayer is a layer of store paths: its tar is written by
// pkg/tarstream on every read and compressed as described.
type storeLayer struct {
	meta
	c compress.Compressor
}

var (
	_ Layer           = (*storeLayer)(nil)
	_ Describer       = (*storeLayer)(nil)
	_ StorePathHolder = (*storeLayer)(nil)
)

func newStoreLayer(d descriptor.Layer) (*storeLayer, error) {
	c, err := compress.New(algorithmOf(d))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	return &storeLayer{meta: meta{d}, c: c}, nil
}

// Compressed streams the tar through the layer's compressor, checking the
// tar and the blob.
func (l *storeLayer) Compressed(ctx context.Context) (io.ReadCloser, error) {
	return checkBlob(l.open(ctx, l.c), l.d), nil
}

// Uncompressed streams the tar.
func (l *storeLayer) Uncompressed(ctx context.Context) (io.ReadCloser, error) {
	return l.open(ctx, noCompression()), nil
}

// open streams the tar through c, hashing it on the way: when it is not the
// described tar, the stream ends with a *MismatchError naming the store path
// and file that changed, instead of io.EOF.
func (l *storeLayer) open(ctx context.Context, c compress.Compressor) io.ReadCloser {
	return produce(ctx, c, func(ctx context.Context, w io.Writer) error {
		diff := NewDigester()
		if _, err := tarstream.Write(ctx, io.MultiWriter(diff, w), l.d.Paths, tarstream.WithoutShares()); err != nil {
			return err
		}
		if diff.Digest() == l.d.DiffID && diff.Size() == l.d.UncompressedSize {
			return nil
		}
		return Diagnose(ctx, l.d, diff.Digest(), diff.Size())
	})
}

// StorePaths are the layer's paths that are not relocated.
func (l *storeLayer) StorePaths() []string {
	var out []string
	for _, p := range l.d.Paths {
		if p.Rewrite == nil {
			out = append(out, p.Path)
		}
	}
	return sortedCopy(out)
}

func (l *storeLayer) compressor() descriptor.Compressor { return l.d.Compressor }

// Paths returns the layer's store paths with their rules, as described.
func (l *storeLayer) Paths() []descriptor.Path { return l.d.Paths }

// Source says where the bytes come from.
func (l *storeLayer) Source() string { return "store paths" }
