package nix

import (
	"bytes"
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// nixImageSource serves one image, or an index of images. Manifests and
// configs are built once when it is opened; layer blobs are streamed from
// the store on each GetBlob.
type nixImageSource struct {
	ref nixReference
	// manifest is the top-level manifest: the image's, or the index.
	manifest []byte
	mimeType string
	// instances are an index's image manifests by digest; nil for an image.
	instances map[digest.Digest][]byte
	// configs and layers are the blobs of every image served, by digest.
	configs map[digest.Digest][]byte
	layers  map[digest.Digest]layer.Layer
}

var _ types.ImageSource = (*nixImageSource)(nil)

// newImageSource loads the image or index the reference names.
func newImageSource(ctx context.Context, ref nixReference) (*nixImageSource, error) {
	s := &nixImageSource{ref: ref, configs: map[digest.Digest][]byte{}, layers: map[digest.Digest]layer.Layer{}}
	isIndex, err := descriptor.IsIndex(ref.path)
	if err != nil {
		return nil, err // names the file; callers name the reference
	}
	if !isIndex {
		img, err := image.Load(ctx, ref.path)
		if err != nil {
			return nil, err
		}
		if s.manifest, err = s.add(img); err != nil {
			return nil, err
		}
		s.mimeType = manifest.GuessMIMEType(s.manifest)
		return s, nil
	}
	idx, err := image.LoadIndex(ctx, ref.path)
	if err != nil {
		return nil, err
	}
	s.instances = map[digest.Digest][]byte{}
	var entries []ocispec.Descriptor
	for _, e := range idx.Images {
		m, err := s.add(e.Image)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", e.Path, err)
		}
		d := digest.FromBytes(m)
		s.instances[d] = m
		p := image.Platform(e.Image)
		entries = append(entries, ocispec.Descriptor{MediaType: manifest.GuessMIMEType(m), Digest: d, Size: int64(len(m)), Platform: &p})
	}
	if s.manifest, err = image.IndexManifest(entries); err != nil {
		return nil, fmt.Errorf("opening nix:%s: %w", ref.path, err)
	}
	s.mimeType = ocispec.MediaTypeImageIndex
	return s, nil
}

// add serves img (as plain tars when the reference asks, or when its
// compressed layers could not be reproduced) and returns its manifest.
func (s *nixImageSource) add(img *image.Image) ([]byte, error) {
	uncompressed := s.ref.opts.uncompressed
	if !uncompressed {
		for _, l := range img.Layers {
			if err := layer.Reproducible(l); err != nil {
				s.ref.opts.log.Warnf("nix:%s: serving every layer uncompressed (digest = diff_id), so the copy cannot fail halfway: %v", s.ref.path, err)
				uncompressed = true
				break
			}
		}
	}
	if uncompressed {
		img = image.Uncompressed(img)
	}
	m, config, err := image.Manifest(img)
	if err != nil {
		return nil, fmt.Errorf("opening nix:%s: %w", s.ref.path, err)
	}
	s.configs[digest.FromBytes(config)] = config
	for _, l := range img.Layers {
		s.layers[l.Digest()] = l
	}
	return m, nil
}

// Reference returns the reference the source was opened from.
func (s *nixImageSource) Reference() types.ImageReference {
	return s.ref
}

// Close releases nothing: layer streams are closed by their readers.
func (s *nixImageSource) Close() error {
	return nil
}

// GetManifest returns the OCI manifest of an image, or the OCI index of an
// index; with instanceDigest, the manifest of that image of the index.
func (s *nixImageSource) GetManifest(_ context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	if instanceDigest == nil {
		return s.manifest, s.mimeType, nil
	}
	if s.instances == nil {
		return nil, "", fmt.Errorf("reading manifest %s of nix:%s: %w", instanceDigest, s.ref.path, ErrNotAList)
	}
	m, ok := s.instances[*instanceDigest]
	if !ok {
		return nil, "", fmt.Errorf("reading manifest %s of nix:%s: %w", instanceDigest, s.ref.path, ErrUnknownManifest)
	}
	return m, ocispec.MediaTypeImageManifest, nil
}

// GetBlob returns a config from memory, or a layer streamed from the store,
// with its exact size. The caller must Close the reader. A layer whose bytes
// are not the described ones (a store file changed since the build) ends
// with an error naming the store path and file, before the destination can
// commit it.
func (s *nixImageSource) GetBlob(ctx context.Context, info types.BlobInfo, _ types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if config, ok := s.configs[info.Digest]; ok {
		return io.NopCloser(bytes.NewReader(config)), int64(len(config)), nil
	}
	l, ok := s.layers[info.Digest]
	if !ok {
		return nil, -1, fmt.Errorf("reading blob %s of nix:%s: %w", info.Digest, s.ref.path, ErrUnknownBlob)
	}
	rc, err := l.Compressed(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("reading blob %s of nix:%s: %w", info.Digest, s.ref.path, err)
	}
	return rc, l.Size(), nil
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
