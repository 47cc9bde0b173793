package pull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// ErrDigestMismatch is wrapped by the error for a blob whose content does
// not hash to the digest that names it.
var ErrDigestMismatch = errors.New("blob digest mismatch")

// ErrNoPlatform is wrapped by the error for an index that has no image for
// the requested platform.
var ErrNoPlatform = errors.New("no image for the platform")

// Options choose the platform and name the image.
type Options struct {
	// OS, Arch and Variant select the image from an index or manifest list
	// (and are checked against a single manifest's config). Arch accepts
	// the aliases of image.NormalizeArch. Defaults: linux and the running
	// machine's architecture; an empty Variant takes the platform's default.
	OS, Arch, Variant string
	// Name and Tag are copied into the descriptor (informational).
	Name, Tag string
	// SkipLayers leaves compressed layer blobs unread. By default each is
	// decompressed once to record its uncompressed size and check its
	// diff_id; without it UncompressedSize stays 0 (unknown), so the image
	// can only be sent with its layers compressed.
	SkipLayers bool
	// Log receives warnings: a platform that differs from the one asked
	// for, history that does not pair with the layers. Default: discarded.
	Log logrus.FieldLogger
}

func (o Options) platform() (ocispec.Platform, error) {
	p := ocispec.Platform{OS: o.OS, Variant: o.Variant}
	if p.OS == "" {
		p.OS = "linux"
	}
	if o.Arch == "" {
		p.Architecture, p.Variant = image.HostArch()
		if o.Variant != "" {
			p.Variant = o.Variant
		}
		return p, nil
	}
	arch, variant, err := image.NormalizeArch(o.Arch)
	if err != nil {
		return p, err
	}
	p.Architecture = arch
	if p.Variant == "" {
		p.Variant = variant
	}
	return p, nil
}

// source finds blobs and manifests of one pulled image.
type source interface {
	// name says where the image is, for messages.
	name() string
	// blob returns the file holding the blob d.
	blob(d digest.Digest) (string, error)
	// manifest returns the file holding the instance manifest d of an index.
	manifest(d digest.Digest) (string, error)
}

// describe reads a manifest (or index) and the config it names and builds
// the image descriptor.
func describe(ctx context.Context, src source, manifestFile string, opts Options) (*descriptor.Image, error) {
	log := logs.Or(opts.Log)
	want, err := opts.platform()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(manifestFile)
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", src.name(), err)
	}
	m, err := parseManifest(src, manifestFile, data, want)
	if err != nil {
		return nil, err
	}

	cfgFile, err := src.blob(m.config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", src.name(), err)
	}
	cfgData, err := readVerified(cfgFile, m.config.Digest, m.config.Size)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", src.name(), err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return nil, fmt.Errorf("parsing config %s of %s: %w", cfgFile, src.name(), err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.layers) {
		return nil, fmt.Errorf("config %s of %s lists %d diff_ids for %d layers: the image is inconsistent, pull it again", cfgFile, src.name(), len(cfg.RootFS.DiffIDs), len(m.layers))
	}
	if cfg.OS != want.OS || cfg.Architecture != want.Architecture {
		log.Warnf("%s is %s/%s, not the requested %s/%s", src.name(), cfg.OS, cfg.Architecture, want.OS, want.Architecture)
	}

	img := &descriptor.Image{
		Nixoci:       descriptor.Version,
		Name:         strings.ToLower(opts.Name),
		Tag:          opts.Tag,
		Architecture: cfg.Architecture,
		OS:           cfg.OS,
		Variant:      cfg.Variant,
		Created:      cfg.Created,
		Author:       cfg.Author,
		Config:       cfg.Config,
		Layers:       make([]descriptor.Layer, 0, len(m.layers)),
	}
	if img.Created != nil {
		t := img.Created.UTC()
		img.Created = &t
	}
	history := layerHistory(src, cfg.History, len(m.layers), log)
	for i, d := range m.layers {
		mt := descriptor.OCILayerMediaType(d.MediaType)
		if _, ok := descriptor.LayerMediaType(mt); !ok {
			return nil, fmt.Errorf("layer %d of %s has media type %q, which nixoci cannot serve: only tar layers (plain, gzip, zstd) are supported", i, src.name(), d.MediaType)
		}
		file, err := src.blob(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, src.name(), err)
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, src.name(), err)
		}
		l := descriptor.Layer{
			MediaType:  mt,
			Digest:     d.Digest,
			Size:       d.Size,
			DiffID:     cfg.RootFS.DiffIDs[i],
			Compressor: descriptor.Compressor{Algorithm: descriptor.AlgorithmOf(mt)},
			Blob:       abs,
			History:    history[i],
		}
		if l.Compressor.Algorithm == descriptor.None {
			if l.DiffID != l.Digest {
				return nil, fmt.Errorf("layer %d of %s is uncompressed but its digest %s differs from its diff_id %s: the image is inconsistent", i, src.name(), l.Digest, l.DiffID)
			}
			l.UncompressedSize = l.Size
		}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, src.name(), err)
		}
		img.Layers = append(img.Layers, l)
	}
	if !opts.SkipLayers {
		if err := measure(ctx, src, img.Layers); err != nil {
			return nil, err
		}
	}
	if err := img.Validate(); err != nil {
		return nil, fmt.Errorf("describing %s: %w", src.name(), err)
	}
	return img, nil
}

// layerHistory pairs the config's history entries that made a layer with
// the layers, in order. When they do not pair up, no history is kept.
func layerHistory(src source, hs []ocispec.History, layers int, log logrus.FieldLogger) []*descriptor.History {
	out := make([]*descriptor.History, layers)
	var made []ocispec.History
	for _, h := range hs {
		if !h.EmptyLayer {
			made = append(made, h)
		}
	}
	if len(made) != layers {
		if len(hs) > 0 {
			log.Warnf("%s: config history has %d layer entries for %d layers; dropping it", src.name(), len(made), layers)
		}
		return out
	}
	for i, h := range made {
		if h.CreatedBy != "" || h.Author != "" || h.Comment != "" {
			out[i] = &descriptor.History{Created: h.Created, CreatedBy: h.CreatedBy, Author: h.Author, Comment: h.Comment}
		}
	}
	return out
}

// readVerified reads a small blob and checks its digest and size.
func readVerified(file string, d digest.Digest, size int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", d, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading blob: %w", err)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return nil, fmt.Errorf("blob %s hashes to %s, not %s: %w; pull the image again", file, got, d, ErrDigestMismatch)
	}
	if size > 0 && int64(len(data)) != size {
		return nil, fmt.Errorf("blob %s is %d bytes, the manifest says %d; pull the image again", file, len(data), size)
	}
	return data, nil
}

// measure decompresses every compressed layer, in parallel, recording its
// uncompressed size and checking its digest and diff_id.
func measure(ctx context.Context, src source, layers []descriptor.Layer) error {
	errs := make([]error, len(layers))
	_ = parallel.Do(ctx, len(layers), func(ctx context.Context, i int) error {
		l := &layers[i]
		if l.Compressor.Algorithm == descriptor.None {
			return nil
		}
		size, err := measureLayer(ctx, l)
		if err != nil {
			errs[i] = fmt.Errorf("layer %d of %s: %w", i, src.name(), err)
			return nil
		}
		l.UncompressedSize = size
		return nil
	})
	return errors.Join(errs...)
}

func measureLayer(ctx context.Context, l *descriptor.Layer) (int64, error) {
	if l.DiffID.Algorithm() != digest.SHA256 || l.Digest.Algorithm() != digest.SHA256 {
		return 0, fmt.Errorf("digest %s, diff_id %s: only sha256 digests are supported", l.Digest, l.DiffID)
	}
	f, err := os.Open(l.Blob)
	if err != nil {
		return 0, fmt.Errorf("reading layer blob: %w", err)
	}
	defer f.Close()
	s, err := layer.Measure(ctx, l.Compressor.Algorithm, f)
	if err != nil {
		return 0, fmt.Errorf("decompressing layer blob %s: %w", l.Blob, err)
	}
	if s.Blob.Digest != l.Digest || s.Blob.Size != l.Size {
		return 0, fmt.Errorf("layer blob %s is %d bytes hashing to %s, the manifest says %d bytes, %s: %w; pull the image again", l.Blob, s.Blob.Size, s.Blob.Digest, l.Size, l.Digest, ErrDigestMismatch)
	}
	if s.Tar.Digest != l.DiffID {
		return 0, fmt.Errorf("layer blob %s decompresses to %s, not its diff_id %s: %w; pull the image again", l.Blob, s.Tar.Digest, l.DiffID, ErrDigestMismatch)
	}
	return s.Tar.Size, nil
}
