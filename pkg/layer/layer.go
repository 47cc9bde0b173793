package layer

import (
	"context"
	"fmt"
	"io"
	"sort"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Layer is one layer of an image. Its digests, sizes and media type come
// from its descriptor and are served without reading anything; its bytes
// are produced anew, lazily, on every Compressed or Uncompressed call.
type Layer interface {
	// Digest, Size and MediaType describe the blob: the bytes a registry
	// stores (compressed, unless the layer's compression is "none").
	Digest() digest.Digest
	Size() int64
	MediaType() string
	// DiffID and UncompressedSize describe the uncompressed tar.
	DiffID() digest.Digest
	UncompressedSize() int64
	// Compressed opens the blob, the bytes Digest names; Uncompressed opens
	// the tar, the bytes DiffID names. Each call streams anew and the
	// caller MUST Close the reader. When the bytes turn out not to be the
	// described ones (a store file changed since the build), Read returns
	// an error naming what changed instead of the final io.EOF.
	Compressed(ctx context.Context) (io.ReadCloser, error)
	Uncompressed(ctx context.Context) (io.ReadCloser, error)
}

// Describer is implemented by layers that a descriptor file can record:
// every layer FromDescriptor, Load, Describe and DescribeTar return.
type Describer interface {
	Descriptor() descriptor.Layer
}

// StorePathHolder is implemented by layers made from store paths that know
// which of them they hold at their store location (under /nix/store).
type StorePathHolder interface {
	StorePaths() []string
}

// Sourcer is implemented by layers that can say, for people, where their
// bytes come from: "store paths", "tar FILE" or "blob FILE".
type Sourcer interface {
	Source() string
}

// compressing is implemented by layers whose blob is compressed anew on
// every read, rather than served from a stored blob.
type compressing interface {
	compressor() descriptor.Compressor
}

// FromDescriptor returns the layer value d describes, with its digests as
// described. It is the one place that looks at which of Paths, Tar, Blob and
// Member is set. Descriptors read from another tool's file (see Load) must go
// through Load instead.
func FromDescriptor(d descriptor.Layer) (Layer, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	// Exactly one source says where the bytes come from.
	sources := 0
	for _, set := range []bool{len(d.Paths) > 0, d.Tar != "", d.Blob != "", d.Member != nil} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return nil, fmt.Errorf("layer %s: only one of paths, tar, blob and member may be set", d.Digest)
	}
	if len(d.StorePaths) > 0 && d.Tar == "" {
		return nil, fmt.Errorf("layer %s: storePaths belongs to a tar layer; a paths layer lists its store paths in paths", d.Digest)
	}
	switch {
	case len(d.Paths) > 0:
		return newStoreLayer(d)
	case d.Tar != "":
		return newTarLayer(d)
	case d.Blob != "":
		return newBlobLayer(d)
	case d.Member != nil:
		if err := d.Member.Check(&d); err != nil {
			return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		return newMemberLayer(d)
	}
	return nil, fmt.Errorf("layer %s: its descriptor names no store paths, tar, blob or archive member to serve it from", d.Digest)
}

// Load returns the layer value d describes, first describing anew what
// another tool described: layers of a nix2container image.json (compressor
// library descriptor.Nix2ContainerLibrary) whose tar that tool wrote are
// streamed again with this nixoci's tar writer and the same algorithm, and
// such a stored blob with no diff_id or sizes has them measured.
func Load(ctx context.Context, d descriptor.Layer) (Layer, error) {
	foreign := d.Compressor.Library == descriptor.Nix2ContainerLibrary
	switch {
	case foreign && len(d.Paths) > 0:
		paths := make([]descriptor.Path, len(d.Paths))
		for i, p := range d.Paths {
			p.Digest, p.Fingerprints = "", ""
			paths[i] = p
		}
		return Describe(ctx, Spec{Paths: paths, Compression: algorithmOf(d), History: d.History})
	case foreign && d.Tar != "":
		return DescribeTar(ctx, d.Tar, algorithmOf(d), d.History)
	case foreign && d.Blob != "" && (d.DiffID == "" || d.UncompressedSize <= 0 || d.Size <= 0):
		return measureBlob(ctx, d)
	}
	return FromDescriptor(d)
}

// LoadAll is Load for every descriptor, in parallel; the result is in order.
func LoadAll(ctx context.Context, ds []descriptor.Layer) ([]Layer, error) {
	out := make([]Layer, len(ds))
	err := parallel.Do(ctx, len(ds), func(ctx context.Context, i int) error {
		l, err := Load(ctx, ds[i])
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		out[i] = l
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Descriptors returns the descriptors of layers, in order. Every layer must
// be a Describer (an uncompressed view, say, is not).
func Descriptors(layers []Layer) ([]descriptor.Layer, error) {
	out := make([]descriptor.Layer, 0, len(layers))
	for i, l := range layers {
		d, ok := l.(Describer)
		if !ok {
			return nil, fmt.Errorf("layer %d (%s) cannot be written to a descriptor: it is a %T, not a layer loaded or described by nixoci", i, l.Digest(), l)
		}
		out = append(out, d.Descriptor())
	}
	return out, nil
}

// StorePaths returns the store paths that layers hold at their store
// location, for leaving them out of the layers above.
func StorePaths(layers ...Layer) map[string]bool {
	set := map[string]bool{}
	for _, l := range layers {
		if h, ok := l.(StorePathHolder); ok {
			for _, p := range h.StorePaths() {
				set[p] = true
			}
		}
	}
	return set
}

// Reproducible returns nil when this binary can make l's blob byte for byte:
// stored blobs are served as they are, and compressed-on-read layers need a
// compressor that reproduces the described one (compress.Reproduces).
// Otherwise the error says which compressor made it and which one this
// binary has.
func Reproducible(l Layer) error {
	c, ok := l.(compressing)
	if !ok {
		return nil
	}
	id := c.compressor()
	if compress.Reproduces(id) {
		return nil
	}
	mine := "no such compressor"
	if c, err := compress.New(id.Algorithm); err == nil {
		mine = DescribeCompressor(c.Identity())
	}
	return fmt.Errorf("layer %s was compressed by %s, but this nixoci has %s", l.Digest(), DescribeCompressor(id), mine)
}

// DescribeCompressor names a compressor identity for messages.
func DescribeCompressor(c descriptor.Compressor) string {
	s := c.Algorithm
	if c.Level != 0 {
		s += fmt.Sprintf(" level %d", c.Level)
	}
	lib := c.Library
	if lib == "" {
		lib = "an unnamed library"
	}
	return s + " from " + lib
}

// algorithmOf is a descriptor's compression algorithm: its compressor's,
// else the one its media type implies.
func algorithmOf(d descriptor.Layer) string {
	if d.Compressor.Algorithm != "" {
		return d.Compressor.Algorithm
	}
	return descriptor.AlgorithmOf(d.MediaType)
}

// meta serves a descriptor's digests, sizes and media type.
type meta struct{ d descriptor.Layer }

func (m meta) Digest() digest.Digest        { return m.d.Digest }
func (m meta) Size() int64                  { return m.d.Size }
func (m meta) DiffID() digest.Digest        { return m.d.DiffID }
func (m meta) UncompressedSize() int64      { return m.d.UncompressedSize }
func (m meta) Descriptor() descriptor.Layer { return m.d }

// MediaType is the described media type, else the one of its algorithm.
func (m meta) MediaType() string {
	if m.d.MediaType != "" {
		return m.d.MediaType
	}
	return descriptor.MediaType(algorithmOf(m.d))
}

func sortedCopy(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}
