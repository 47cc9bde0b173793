package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// DefaultCreated returns the creation time written when a descriptor has
// none: 1970-01-01T00:00:01Z, as Nix-built images conventionally use.
func DefaultCreated() time.Time {
	return time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)
}

// ErrForeign is wrapped by the error for a descriptor whose digests were
// computed by another tool (nix2container) and not yet recomputed.
var ErrForeign = errors.New("foreign descriptor digests not recomputed")

// Docker layer media types that pulled images may carry; their bytes are the
// same as the OCI types they map to.
const (
	dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayerTar  = "application/vnd.docker.image.rootfs.diff.tar"
	dockerLayerZstd = "application/vnd.docker.image.rootfs.diff.tar.zstd"
)

// OCILayerMediaType returns the OCI layer media type for a layer media type:
// Docker schema2 layer types map to their OCI equivalents, anything else is
// returned unchanged.
func OCILayerMediaType(mediaType string) string {
	switch mediaType {
	case dockerLayerGzip:
		return ocispec.MediaTypeImageLayerGzip
	case dockerLayerTar:
		return ocispec.MediaTypeImageLayer
	case dockerLayerZstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return mediaType
}

// created returns the image's creation time, or DefaultCreated.
func created(img *descriptor.Image) time.Time {
	if img.Created != nil {
		return img.Created.UTC()
	}
	return DefaultCreated()
}

// OCIConfig returns the OCI image config of img as a value: platform,
// runtime config, one diff_id per layer and one history entry per layer
// (dated with the image's creation time).
func OCIConfig(img *descriptor.Image) (ocispec.Image, error) {
	if err := check(img); err != nil {
		return ocispec.Image{}, err
	}
	t := created(img)
	c := ocispec.Image{
		Created: &t,
		Author:  img.Author,
		Platform: ocispec.Platform{
			Architecture: img.Architecture,
			OS:           img.OS,
			Variant:      img.Variant,
		},
		Config: img.Config,
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: make([]digest.Digest, 0, len(img.Layers))},
	}
	for _, l := range img.Layers {
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.DiffID)
		h := ocispec.History{Created: &t}
		if l.History != nil {
			h.CreatedBy = l.History.CreatedBy
			h.Author = l.History.Author
			h.Comment = l.History.Comment
			if l.History.Created != nil {
				h.Created = l.History.Created
			}
		}
		c.History = append(c.History, h)
	}
	return c, nil
}

// Config returns the OCI image config JSON of img. The same descriptor
// always gives the same bytes.
func Config(img *descriptor.Image) ([]byte, error) {
	c, err := OCIConfig(img)
	if err != nil {
		return nil, err
	}
	return marshal(c)
}

// ConfigDescriptor returns the OCI descriptor of img's config blob, and the blob.
func ConfigDescriptor(img *descriptor.Image) (ocispec.Descriptor, []byte, error) {
	config, err := Config(img)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(config),
		Size:      int64(len(config)),
	}, config, nil
}

// ConfigDigest returns the digest of img's config blob.
func ConfigDigest(img *descriptor.Image) (digest.Digest, error) {
	d, _, err := ConfigDescriptor(img)
	return d.Digest, err
}

// LayerDescriptor returns the manifest entry of a layer: its blob as
// described (media type, digest, size), or, when uncompressed, the plain tar
// (application/vnd.oci.image.layer.v1.tar with the diff_id and uncompressed
// size). Docker media types of pulled layers are given their OCI names.
func LayerDescriptor(l descriptor.Layer, uncompressed bool) ocispec.Descriptor {
	if uncompressed {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.UncompressedSize}
	}
	mt := OCILayerMediaType(l.MediaType)
	if mt == "" {
		mt = descriptor.MediaType(l.Compressor.Algorithm)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: l.Digest, Size: l.Size}
}

// Manifest returns the OCI image manifest of img and the config blob it
// names. Layers use the descriptor's blobs, or the plain tars when
// uncompressed is true. No annotations are written, so the bytes depend
// only on the descriptor.
func Manifest(img *descriptor.Image, uncompressed bool) (manifest, config []byte, err error) {
	cd, config, err := ConfigDescriptor(img)
	if err != nil {
		return nil, nil, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cd,
		Layers:    make([]ocispec.Descriptor, 0, len(img.Layers)),
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, LayerDescriptor(l, uncompressed))
	}
	manifest, err = marshal(m)
	if err != nil {
		return nil, nil, err
	}
	return manifest, config, nil
}

// ManifestDigest returns the digest of img's manifest.
func ManifestDigest(img *descriptor.Image, uncompressed bool) (digest.Digest, error) {
	m, _, err := Manifest(img, uncompressed)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(m), nil
}

// check refuses descriptors that cannot give a correct config or manifest.
func check(img *descriptor.Image) error {
	if img == nil {
		return errors.New("no image descriptor")
	}
	if img.Foreign {
		return fmt.Errorf("image %q: %w: recompute them first (layer.Rehash)", img.Name, ErrForeign)
	}
	if err := img.Validate(); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	return nil
}

// marshal encodes v compactly, without HTML escaping; encoding/json sorts
// map keys, so equal values give equal bytes.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding OCI JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
