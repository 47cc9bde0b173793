package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// nixImageSource serves one descriptor. The manifest and config are built
// once when it is opened; layer blobs are streamed from the store on each
// GetBlob.
type nixImageSource struct {
	ref          nixReference
	uncompressed bool
	manifest     []byte
	mimeType     string
	config       []byte
	configDigest digest.Digest
	// layers maps each served layer digest (the compressed digest, or the
	// diff_id when uncompressed) to its descriptor.
	layers map[digest.Digest]descriptor.Layer
}

var _ types.ImageSource = (*nixImageSource)(nil)

// newImageSource loads and, for foreign descriptors, rehashes the image, then
// decides once whether layers can be served compressed.
func newImageSource(ctx context.Context, ref nixReference) (*nixImageSource, error) {
	img, err := descriptor.LoadImage(ref.path)
	if err != nil {
		return nil, err // names the file; callers name the reference
	}
	if img.Foreign {
		logrus.Debugf("nix:%s: recomputing the digests of a foreign descriptor", ref.path)
		if err := layer.Rehash(ctx, img); err != nil {
			return nil, fmt.Errorf("opening nix:%s: %w", ref.path, err)
		}
	}
	uncompressed := ref.opts.uncompressed
	if !uncompressed {
		if why := irreproducible(img); why != "" {
			logrus.Warnf("nix:%s: serving every layer uncompressed (digest = diff_id), so the copy cannot fail halfway: %s", ref.path, why)
			uncompressed = true
		}
	}
	m, config, err := image.Manifest(img, uncompressed)
	if err != nil {
		return nil, fmt.Errorf("opening nix:%s: %w", ref.path, err)
	}
	s := &nixImageSource{
		ref:          ref,
		uncompressed: uncompressed,
		manifest:     m,
		mimeType:     manifest.GuessMIMEType(m),
		config:       config,
		configDigest: digest.FromBytes(config),
		layers:       make(map[digest.Digest]descriptor.Layer, len(img.Layers)),
	}
	for _, l := range img.Layers {
		s.layers[s.digestOf(l)] = l
	}
	return s, nil
}

// irreproducible returns why some layer's compressed blob cannot be
// reproduced by this binary, or "" when all can. Stored blobs are served as
// they are and always can.
func irreproducible(img *descriptor.Image) string {
	for i, l := range img.Layers {
		if l.Blob != "" || compress.Reproduces(l.Compressor) {
			continue
		}
		mine := "no such compressor"
		if c, err := compress.New(l.Compressor.Algorithm); err == nil {
			mine = describeCompressor(c.Identity())
		}
		return fmt.Sprintf("layer %d (%s) was compressed by %s, but this nixoci has %s", i, l.Digest, describeCompressor(l.Compressor), mine)
	}
	return ""
}

func describeCompressor(c descriptor.Compressor) string {
	lib := c.Library
	if lib == "" {
		lib = "an unnamed library"
	}
	return fmt.Sprintf("%s level %d from %s", c.Algorithm, c.Level, lib)
}

// digestOf is the digest l is served under.
func (s *nixImageSource) digestOf(l descriptor.Layer) digest.Digest {
	if s.uncompressed {
		return l.DiffID
	}
	return l.Digest
}

// sizeOf is the exact size of the blob served for l.
func (s *nixImageSource) sizeOf(l descriptor.Layer) int64 {
	if s.uncompressed {
		return l.UncompressedSize
	}
	return l.Size
}

// Reference returns the reference the source was opened from.
func (s *nixImageSource) Reference() types.ImageReference {
	return s.ref
}

// Close releases nothing: layer streams are closed by their readers.
func (s *nixImageSource) Close() error {
	return nil
}

// GetManifest returns the OCI manifest. instanceDigest must be nil.
func (s *nixImageSource) GetManifest(_ context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	if instanceDigest != nil {
		return nil, "", fmt.Errorf("reading manifest %s of nix:%s: %w", instanceDigest, s.ref.path, ErrNotAList)
	}
	return s.manifest, s.mimeType, nil
}

// GetBlob returns the config from memory, or a layer streamed from the store,
// with its exact size. The caller must Close the reader.
func (s *nixImageSource) GetBlob(ctx context.Context, info types.BlobInfo, _ types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if info.Digest == s.configDigest {
		return io.NopCloser(bytes.NewReader(s.config)), int64(len(s.config)), nil
	}
	l, ok := s.layers[info.Digest]
	if !ok {
		return nil, -1, fmt.Errorf("reading blob %s of nix:%s: %w", info.Digest, s.ref.path, ErrUnknownBlob)
	}
	rc, err := layer.Open(ctx, l, s.uncompressed)
	if err != nil {
		return nil, -1, fmt.Errorf("reading blob %s of nix:%s: %w", info.Digest, s.ref.path, err)
	}
	return rc, s.sizeOf(l), nil
}

// HasThreadSafeGetBlob is true: every GetBlob opens its own stream.
func (s *nixImageSource) HasThreadSafeGetBlob() bool {
	return true
}

// GetSignatures returns none: descriptors carry no signatures.
func (s *nixImageSource) GetSignatures(context.Context, *digest.Digest) ([][]byte, error) {
	return nil, nil
}

// LayerInfosForCopy returns nil: the manifest's layer list is what is served.
func (s *nixImageSource) LayerInfosForCopy(context.Context, *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}
