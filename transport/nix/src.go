package nix

import (
	"bytes"
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// nixImageSource serves one image. The manifest and config are built once
// when it is opened; layer blobs are streamed from the store on each GetBlob.
type nixImageSource struct {
	ref          nixReference
	manifest     []byte
	mimeType     string
	config       []byte
	configDigest digest.Digest
	// layers maps each served layer's digest to the layer.
	layers map[digest.Digest]layer.Layer
}

var _ types.ImageSource = (*nixImageSource)(nil)

// newImageSource loads the image and decides once whether its layers can be
// served as described or only as plain tars.
func newImageSource(ctx context.Context, ref nixReference) (*nixImageSource, error) {
	img, err := image.Load(ctx, ref.path)
	if err != nil {
		return nil, err // names the file; callers name the reference
	}
	if !ref.opts.uncompressed {
		for _, l := range img.Layers {
			if err := layer.Reproducible(l); err != nil {
				ref.opts.log.Warnf("nix:%s: serving every layer uncompressed (digest = diff_id), so the copy cannot fail halfway: %v", ref.path, err)
				ref.opts.uncompressed = true
				break
			}
		}
	}
	if ref.opts.uncompressed {
		img = image.Uncompressed(img)
	}
	m, config, err := image.Manifest(img)
	if err != nil {
		return nil, fmt.Errorf("opening nix:%s: %w", ref.path, err)
	}
	s := &nixImageSource{
		ref:          ref,
		manifest:     m,
		mimeType:     manifest.GuessMIMEType(m),
		config:       config,
		configDigest: digest.FromBytes(config),
		layers:       make(map[digest.Digest]layer.Layer, len(img.Layers)),
	}
	for _, l := range img.Layers {
		s.layers[l.Digest()] = l
	}
	return s, nil
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
// with its exact size. The caller must Close the reader. A layer whose bytes
// are not the described ones (a store file changed since the build) ends
// with an error naming the store path and file, before the destination can
// commit it.
func (s *nixImageSource) GetBlob(ctx context.Context, info types.BlobInfo, _ types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if info.Digest == s.configDigest {
		return io.NopCloser(bytes.NewReader(s.config)), int64(len(s.config)), nil
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
