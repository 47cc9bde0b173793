package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// Image is an image as a value: its name, platform, runtime config and
// layers, base first. Layers serve their bytes lazily (pkg/layer).
type Image struct {
	// Name and Tag are informational defaults for copy scripts.
	Name, Tag string
	// Architecture, OS and Variant use Docker/OCI naming.
	Architecture, OS, Variant string
	// Created is the creation time; nil means DefaultCreated.
	Created *time.Time
	// Author goes into the config's author field.
	Author string
	// Config is the OCI runtime config (Env, Cmd, Entrypoint, ...).
	Config ocispec.ImageConfig
	// Layers, base first.
	Layers []layer.Layer
}

// DefaultCreated returns the creation time written when a descriptor has
// none: 1970-01-01T00:00:01Z, as Nix-built images conventionally use.
func DefaultCreated() time.Time {
	return time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)
}

// Load reads an image descriptor (a file, or a directory holding
// image.json), nixoci's or nix2container's, and returns the image with its
// layers as values (see layer.Load).
func Load(ctx context.Context, path string) (*Image, error) {
	d, err := descriptor.LoadImage(path)
	if err != nil {
		return nil, err
	}
	img, err := FromDescriptor(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("image descriptor %s: %w", path, err)
	}
	return img, nil
}

// FromDescriptor returns the image d describes (see layer.Load).
func FromDescriptor(ctx context.Context, d *descriptor.Image) (*Image, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	layers, err := layer.LoadAll(ctx, d.Layers)
	if err != nil {
		return nil, err
	}
	return &Image{
		Name:         d.Name,
		Tag:          d.Tag,
		Architecture: d.Architecture,
		OS:           d.OS,
		Variant:      d.Variant,
		Created:      d.Created,
		Author:       d.Author,
		Config:       d.Config,
		Layers:       layers,
	}, nil
}

// Descriptor returns the image descriptor that records img. Every layer
// must be a layer.Describer.
func (img *Image) Descriptor() (*descriptor.Image, error) {
	layers, err := layer.Descriptors(img.Layers)
	if err != nil {
		return nil, err
	}
	if layers == nil {
		layers = []descriptor.Layer{}
	}
	d := &descriptor.Image{
		Nixoci:       descriptor.Version,
		Name:         img.Name,
		Tag:          img.Tag,
		Architecture: img.Architecture,
		OS:           img.OS,
		Variant:      img.Variant,
		Created:      img.Created,
		Author:       img.Author,
		Config:       img.Config,
		Layers:       layers,
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Name, err)
	}
	return d, nil
}

// Write writes img's descriptor to path (atomically; see descriptor.Write).
func Write(path string, img *Image) error {
	d, err := img.Descriptor()
	if err != nil {
		return fmt.Errorf("writing image descriptor %s: %w", path, err)
	}
	return descriptor.Write(path, d)
}

// Uncompressed returns img with every layer served uncompressed
// (layer.Uncompressed): its manifest lists the plain tars.
func Uncompressed(img *Image) *Image {
	out := *img
	out.Layers = make([]layer.Layer, len(img.Layers))
	for i, l := range img.Layers {
		out.Layers[i] = layer.Uncompressed(l)
	}
	return &out
}

// created returns the image's creation time, or DefaultCreated.
func (img *Image) created() time.Time {
	if img.Created != nil {
		return img.Created.UTC()
	}
	return DefaultCreated()
}

// OCIConfig returns the OCI image config of img as a value: platform,
// runtime config, one diff_id per layer and one history entry per layer
// (dated with the image's creation time).
func OCIConfig(img *Image) (ocispec.Image, error) {
	if err := check(img); err != nil {
		return ocispec.Image{}, err
	}
	t := img.created()
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
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.DiffID())
		h := ocispec.History{Created: &t}
		if hist := historyOf(l); hist != nil {
			h.CreatedBy = hist.CreatedBy
			h.Author = hist.Author
			h.Comment = hist.Comment
			if hist.Created != nil {
				h.Created = hist.Created
			}
		}
		c.History = append(c.History, h)
	}
	return c, nil
}

// historyOf is a layer's recorded history entry, if any.
func historyOf(l layer.Layer) *descriptor.History {
	if d, ok := l.(layer.Describer); ok {
		return d.Descriptor().History
	}
	if u, ok := l.(interface{ Unwrap() layer.Layer }); ok {
		return historyOf(u.Unwrap())
	}
	return nil
}

// Config returns the OCI image config JSON of img. The same image always
// gives the same bytes.
func Config(img *Image) ([]byte, error) {
	c, err := OCIConfig(img)
	if err != nil {
		return nil, err
	}
	return marshal(c)
}

// ManifestLayer returns the manifest entry of a layer: its blob's media
// type, digest and size. Docker media types of pulled layers are given
// their OCI names.
func ManifestLayer(l layer.Layer) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: descriptor.OCILayerMediaType(l.MediaType()), Digest: l.Digest(), Size: l.Size()}
}

// Manifest returns the OCI image manifest of img and the config blob it
// names. No annotations are written, so the bytes depend only on the image.
func Manifest(img *Image) (manifestJSON, config []byte, err error) {
	config, err = Config(img)
	if err != nil {
		return nil, nil, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers: make([]ocispec.Descriptor, 0, len(img.Layers)),
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, ManifestLayer(l))
	}
	manifestJSON, err = marshal(m)
	if err != nil {
		return nil, nil, err
	}
	return manifestJSON, config, nil
}

// check refuses images that cannot give a correct config or manifest.
func check(img *Image) error {
	if img == nil {
		return errors.New("no image")
	}
	if img.Architecture == "" || img.OS == "" {
		return fmt.Errorf("image %q: architecture and os must be set", img.Name)
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
