package layer

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// tarLayer is a layer served from a stored uncompressed tar file (a layer
// that is not a pure function of store paths), compressed on every read.
type tarLayer struct {
	meta
	c compress.Compressor
}

var (
	_ Layer           = (*tarLayer)(nil)
	_ Describer       = (*tarLayer)(nil)
	_ StorePathHolder = (*tarLayer)(nil)
)

func newTarLayer(d descriptor.Layer) (*tarLayer, error) {
	c, err := compress.New(algorithmOf(d))
	if err != nil {
		return nil, fmt.Errorf("layer tar %s: %w", d.Tar, err)
	}
	return &tarLayer{meta: meta{d}, c: c}, nil
}

// Uncompressed opens the tar file, checked against the diff_id as it is read.
func (l *tarLayer) Uncompressed(context.Context) (io.ReadCloser, error) {
	f, err := os.Open(l.d.Tar)
	if err != nil {
		return nil, fmt.Errorf("opening layer tar %s: %w: rebuild the image descriptor", l.d.Tar, err)
	}
	return verified(f, f, l.d.DiffID, l.d.UncompressedSize, l.changed), nil
}

// Compressed compresses the tar file as described; with compression "none"
// it is the tar itself.
func (l *tarLayer) Compressed(ctx context.Context) (io.ReadCloser, error) {
	if algorithmOf(l.d) == descriptor.None {
		return l.Uncompressed(ctx)
	}
	f, err := os.Open(l.d.Tar)
	if err != nil {
		return nil, fmt.Errorf("opening layer tar %s: %w: rebuild the image descriptor", l.d.Tar, err)
	}
	return checkBlob(produce(ctx, l.c, func(ctx context.Context, w io.Writer) error {
		defer f.Close()
		r := verified(f, nil, l.d.DiffID, l.d.UncompressedSize, l.changed)
		if _, err := copyContext(ctx, w, r); err != nil {
			return fmt.Errorf("reading layer tar %s: %w", l.d.Tar, err)
		}
		return nil
	}), l.d), nil
}

func (l *tarLayer) changed(got Sum) error {
	return &MismatchError{
		Index:  -1,
		Digest: l.d.Digest,
		What:   compareSums(nil, "diff_id", got, Sum{l.d.DiffID, l.d.UncompressedSize}),
		Detail: fmt.Sprintf("the layer tar %s changed since it was described; rebuild the image", l.d.Tar),
	}
}

// StorePaths are the store paths the tar was made of, as recorded.
func (l *tarLayer) StorePaths() []string { return sortedCopy(l.d.StorePaths) }

func (l *tarLayer) compressor() descriptor.Compressor { return l.d.Compressor }

// Source says where the bytes come from.
func (l *tarLayer) Source() string { return "tar " + l.d.Tar }
