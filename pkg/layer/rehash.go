package layer

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Rehash recomputes, in place and in parallel, the digests of an image
// whose descriptor was written by another tool (img.Foreign: nix2container,
// whose tar writer differs from ours). Paths and Tar layers are streamed
// again with the same compression algorithm and get this binary's
// compressor identity, diff_id, digest, sizes and per-path shares. Blob
// layers keep their digest; a missing diff_id or uncompressed size is
// computed from the blob. Foreign is cleared on success.
func Rehash(ctx context.Context, img *descriptor.Image) error {
	layers := make([]descriptor.Layer, len(img.Layers))
	copy(layers, img.Layers)
	err := parallel.Do(ctx, len(layers), func(ctx context.Context, i int) error {
		if err := rehash(ctx, &layers[i]); err != nil {
			return fmt.Errorf("rehashing layer %d (%s): %w", i, layers[i].Digest, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	img.Layers = layers
	img.Foreign = false
	return nil
}

func rehash(ctx context.Context, l *descriptor.Layer) error {
	algorithm := l.Compressor.Algorithm
	if algorithm == "" {
		algorithm = descriptor.AlgorithmOf(l.MediaType)
	}
	switch {
	case len(l.Paths) > 0:
		nl, err := Describe(ctx, Spec{Paths: l.Paths, Compression: algorithm, History: l.History})
		if err != nil {
			return err
		}
		*l = nl
	case l.Tar != "":
		nl, err := DescribeTar(ctx, l.Tar, algorithm, l.History)
		if err != nil {
			return err
		}
		*l = nl
	case l.Blob != "":
		if l.DiffID != "" && l.UncompressedSize > 0 && l.Size > 0 {
			return nil
		}
		f, err := os.Open(l.Blob)
		if err != nil {
			return fmt.Errorf("reading layer blob %s: %w", l.Blob, err)
		}
		defer f.Close()
		blob := NewDigester()
		zr, err := compress.NewReader(algorithm, io.TeeReader(f, blob))
		if err != nil {
			return fmt.Errorf("reading layer blob %s: %w", l.Blob, err)
		}
		defer zr.Close()
		diff := NewDigester()
		if _, err := copyContext(ctx, diff, zr); err != nil {
			return fmt.Errorf("decompressing layer blob %s: %w", l.Blob, err)
		}
		// Count whatever follows the compressed stream too.
		if _, err := copyContext(ctx, blob, f); err != nil {
			return fmt.Errorf("reading layer blob %s: %w", l.Blob, err)
		}
		if l.Digest == "" {
			l.Digest = blob.Digest()
		} else if l.Digest != blob.Digest() {
			return fmt.Errorf("layer blob %s has digest %s, not %s as its descriptor says: the file changed; rebuild the image", l.Blob, blob.Digest(), l.Digest)
		}
		l.Size = blob.Size()
		l.DiffID, l.UncompressedSize = diff.Digest(), diff.Size()
	}
	return nil
}
