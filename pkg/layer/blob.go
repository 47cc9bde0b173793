package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// blobLayer is a layer served from a stored blob, verbatim: the layers of
// pulled base images.
type blobLayer struct {
	meta
}

var (
	_ Layer     = (*blobLayer)(nil)
	_ Describer = (*blobLayer)(nil)
)

func newBlobLayer(d descriptor.Layer) (*blobLayer, error) {
	if _, err := compress.New(algorithmOf(d)); err != nil {
		return nil, fmt.Errorf("layer blob %s: %w", d.Blob, err)
	}
	return &blobLayer{meta{d}}, nil
}

// Compressed opens the blob file, checked against the digest as it is read.
func (l *blobLayer) Compressed(context.Context) (io.ReadCloser, error) {
	f, err := os.Open(l.d.Blob)
	if err != nil {
		return nil, fmt.Errorf("opening layer blob %s: %w", l.d.Blob, err)
	}
	return verified(f, f, l.d.Digest, l.d.Size, func(got Sum) error {
		return l.changed(compareSums(nil, "digest", got, Sum{l.d.Digest, l.d.Size}))
	}), nil
}

// Uncompressed decompresses the blob, checking the tar against the diff_id.
func (l *blobLayer) Uncompressed(context.Context) (io.ReadCloser, error) {
	f, err := os.Open(l.d.Blob)
	if err != nil {
		return nil, fmt.Errorf("opening layer blob %s: %w", l.d.Blob, err)
	}
	zr, err := compress.NewReader(algorithmOf(l.d), f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening layer blob %s: %w", l.d.Blob, err)
	}
	closer := closers{zr, f}
	return verified(zr, closer, l.d.DiffID, l.d.UncompressedSize, func(got Sum) error {
		return l.changed(compareSums(nil, "diff_id", got, Sum{l.d.DiffID, l.d.UncompressedSize}))
	}), nil
}

func (l *blobLayer) changed(what []string) error {
	return &MismatchError{
		Index:  -1,
		Digest: l.d.Digest,
		What:   what,
		Detail: fmt.Sprintf("the layer blob %s changed since it was described; pull the image again", l.d.Blob),
	}
}

// measureBlob describes a stored blob whose diff_id or sizes are unknown
// by reading it once; a digest it has is checked.
func measureBlob(ctx context.Context, d descriptor.Layer) (Layer, error) {
	f, err := os.Open(d.Blob)
	if err != nil {
		return nil, fmt.Errorf("reading layer blob %s: %w", d.Blob, err)
	}
	defer f.Close()
	s, err := Measure(ctx, algorithmOf(d), f)
	if err != nil {
		return nil, fmt.Errorf("reading layer blob %s: %w", d.Blob, err)
	}
	if d.Digest != "" && d.Digest != s.Blob.Digest {
		return nil, fmt.Errorf("layer blob %s has digest %s, not %s as its descriptor says: the file changed; rebuild the image", d.Blob, s.Blob.Digest, d.Digest)
	}
	if d.DiffID != "" && d.DiffID != s.Tar.Digest {
		return nil, fmt.Errorf("layer blob %s decompresses to %s, not the diff_id %s its descriptor says: rebuild the image", d.Blob, s.Tar.Digest, d.DiffID)
	}
	d.Digest, d.Size = s.Blob.Digest, s.Blob.Size
	d.DiffID, d.UncompressedSize = s.Tar.Digest, s.Tar.Size
	return FromDescriptor(d)
}

// closers closes each of its elements, in order.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Source says where the bytes come from.
func (l *blobLayer) Source() string { return "blob " + l.d.Blob }
