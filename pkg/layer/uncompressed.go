package layer

import (
	"context"
	"io"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Uncompressed returns l as an uncompressed layer: its blob is l's tar, so
// its digest and size are l's diff_id and uncompressed size and its media
// type is the plain OCI tar layer. Destinations that store plain tars (the
// Docker daemon, containers-storage) are served this view, so that nothing
// is compressed only to be decompressed again. It is a view for serving:
// it does not implement Describer.
func Uncompressed(l Layer) Layer {
	if u, ok := l.(uncompressed); ok {
		return u
	}
	return uncompressed{l}
}

type uncompressed struct{ l Layer }

var _ Layer = uncompressed{}

func (u uncompressed) Digest() digest.Digest   { return u.l.DiffID() }
func (u uncompressed) Size() int64             { return u.l.UncompressedSize() }
func (u uncompressed) MediaType() string       { return ocispec.MediaTypeImageLayer }
func (u uncompressed) DiffID() digest.Digest   { return u.l.DiffID() }
func (u uncompressed) UncompressedSize() int64 { return u.l.UncompressedSize() }

func (u uncompressed) Compressed(ctx context.Context) (io.ReadCloser, error) {
	return u.l.Uncompressed(ctx)
}

func (u uncompressed) Uncompressed(ctx context.Context) (io.ReadCloser, error) {
	return u.l.Uncompressed(ctx)
}

// StorePaths passes on l's store paths, when it knows them.
func (u uncompressed) StorePaths() []string {
	if h, ok := u.l.(StorePathHolder); ok {
		return h.StorePaths()
	}
	return nil
}

// Unwrap returns the layer this is a view of.
func (u uncompressed) Unwrap() Layer { return u.l }
