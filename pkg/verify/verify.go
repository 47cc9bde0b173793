package verify

import (
	"context"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// ErrMismatch is wrapped by every *MismatchError.
var ErrMismatch = layer.ErrMismatch

// MismatchError says where a layer differs from its descriptor: the store
// path and file, where they can be told (see layer.MismatchError).
type MismatchError = layer.MismatchError

// Report is the outcome of a successful verification.
type Report struct {
	Layers []LayerReport
}

// LayerReport says what was checked for one layer.
type LayerReport struct {
	Index  int
	Digest digest.Digest
	DiffID digest.Digest
	// CompressedChecked is false when the compressed digest was not
	// checked: this binary's compressor does not reproduce the one that
	// described the layer, so only the uncompressed digest was compared.
	CompressedChecked bool
	// Note explains an unchecked compressed digest.
	Note string
}

// Image re-streams every layer of img, in parallel, and compares digests and
// sizes with what the layer describes. The compressed digest is compared
// only when this binary reproduces the layer's blob (layer.Reproducible);
// the report says when it was not. Mismatches come back as *MismatchError
// values (with the layer's Index set), joined in layer order; other
// failures (a missing store path) name the layer too.
func Image(ctx context.Context, img *image.Image) (*Report, error) {
	reports := make([]LayerReport, len(img.Layers))
	errs := make([]error, len(img.Layers))
	// Every layer is checked, so that all mismatches are reported at once.
	if err := parallel.Do(ctx, len(img.Layers), func(ctx context.Context, i int) error {
		reports[i], errs[i] = verifyLayer(ctx, i, img.Layers[i])
		var m *MismatchError
		switch {
		case errors.As(errs[i], &m):
			// The mismatch itself says it all; what wrapped it on the
			// way (a decompressor, say) only adds noise.
			named := *m
			named.Index = i
			errs[i] = &named
		case errs[i] != nil:
			errs[i] = fmt.Errorf("layer %d (%s): %w", i, img.Layers[i].Digest(), errs[i])
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("verifying image: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Report{Layers: reports}, nil
}

func verifyLayer(ctx context.Context, i int, l layer.Layer) (LayerReport, error) {
	rep := LayerReport{Index: i, Digest: l.Digest(), DiffID: l.DiffID()}
	described := layer.Sums{
		Blob: layer.Sum{Digest: l.Digest(), Size: l.Size()},
		Tar:  layer.Sum{Digest: l.DiffID(), Size: l.UncompressedSize()},
	}
	if err := layer.Reproducible(l); err != nil {
		// The tar can still be checked: the layer's stream compares it
		// with the diff_id as it goes.
		rep.Note = fmt.Sprintf("compressed digest not checked: %v; checked the uncompressed digest only", err)
		r, err := l.Uncompressed(ctx)
		if err != nil {
			return rep, err
		}
		defer r.Close()
		got, err := layer.Measure(ctx, descriptor.None, r)
		if err == nil && got.Tar != described.Tar {
			err = mismatch(l, got.Tar, described.Tar, "diff_id", "")
		}
		var m *MismatchError
		if errors.As(err, &m) {
			noted := *m
			noted.Detail += " (" + rep.Note + ")"
			err = &noted
		}
		return rep, err
	}
	rep.CompressedChecked = true
	r, err := l.Compressed(ctx)
	if err != nil {
		return rep, err
	}
	defer r.Close()
	got, err := layer.Measure(ctx, descriptor.AlgorithmOf(l.MediaType()), r)
	if err != nil {
		return rep, err
	}
	switch {
	case got.Tar != described.Tar:
		return rep, mismatch(l, got.Tar, described.Tar, "diff_id", "the layer's tar differs from its descriptor")
	case got.Blob != described.Blob:
		detail := "the tar is as described but its compressed blob is not"
		if descriptor.AlgorithmOf(l.MediaType()) == descriptor.None {
			detail = "an uncompressed layer's digest and size must be its diff_id and uncompressed size"
		}
		return rep, mismatch(l, got.Blob, described.Blob, "digest", detail)
	}
	return rep, nil
}

func mismatch(l layer.Layer, got, want layer.Sum, name, detail string) error {
	m := &MismatchError{Index: -1, Digest: l.Digest(), Detail: detail}
	if got.Digest != want.Digest {
		m.What = append(m.What, fmt.Sprintf("%s %s, described %s", name, got.Digest, want.Digest))
	}
	if got.Size != want.Size {
		m.What = append(m.What, fmt.Sprintf("%s size %d, described %d", name, got.Size, want.Size))
	}
	return m
}
