package pull

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
)

// Media types of manifests and configs (Docker schema2 and OCI).
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	dockerSchema1Sign  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
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
func describe(src source, manifestFile string, opts Options) (*descriptor.Image, error) {
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

	cfgFile, err := src.blob(m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", src.name(), err)
	}
	cfgData, err := readVerified(cfgFile, m.Config.Digest, m.Config.Size)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", src.name(), err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return nil, fmt.Errorf("parsing config %s of %s: %w", cfgFile, src.name(), err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config %s of %s lists %d diff_ids for %d layers: the image is inconsistent, pull it again", cfgFile, src.name(), len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	if cfg.OS != want.OS || cfg.Architecture != want.Architecture {
		logrus.Warnf("%s is %s/%s, not the requested %s/%s", src.name(), cfg.OS, cfg.Architecture, want.OS, want.Architecture)
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
		Layers:       make([]descriptor.Layer, 0, len(m.Layers)),
	}
	if img.Created != nil {
		t := img.Created.UTC()
		img.Created = &t
	}
	history := layerHistory(src, cfg.History, len(m.Layers))
	for i, d := range m.Layers {
		mt := image.OCILayerMediaType(d.MediaType)
		if !knownLayerType(mt) {
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
		if err := measure(src, img.Layers); err != nil {
			return nil, err
		}
	}
	if err := img.Validate(); err != nil {
		return nil, fmt.Errorf("describing %s: %w", src.name(), err)
	}
	return img, nil
}

func knownLayerType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return true
	}
	return false
}

// layerHistory pairs the config's history entries that made a layer with
// the layers, in order. When they do not pair up, no history is kept.
func layerHistory(src source, hs []ocispec.History, layers int) []*descriptor.History {
	out := make([]*descriptor.History, layers)
	var made []ocispec.History
	for _, h := range hs {
		if !h.EmptyLayer {
			made = append(made, h)
		}
	}
	if len(made) != layers {
		if len(hs) > 0 {
			logrus.Warnf("%s: config history has %d layer entries for %d layers; dropping it", src.name(), len(made), layers)
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
// uncompressed size and checking its diff_id.
func measure(src source, layers []descriptor.Layer) error {
	sem := make(chan struct{}, runtime.NumCPU())
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	for i := range layers {
		l := &layers[i]
		if l.Compressor.Algorithm == descriptor.None {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			size, err := measureLayer(l)
			if err != nil {
				errs[i] = fmt.Errorf("layer %d of %s: %w", i, src.name(), err)
				return
			}
			l.UncompressedSize = size
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func measureLayer(l *descriptor.Layer) (int64, error) {
	if l.DiffID.Algorithm() != digest.SHA256 {
		return 0, fmt.Errorf("diff_id %s: only sha256 diff_ids are supported", l.DiffID)
	}
	f, err := os.Open(l.Blob)
	if err != nil {
		return 0, fmt.Errorf("reading layer blob: %w", err)
	}
	defer f.Close()
	// The compressed bytes are hashed on the way through, so the blob is
	// checked against its digest in the same pass.
	blob := l.Digest.Algorithm().Digester()
	counted := &countingReader{r: io.TeeReader(f, blob.Hash())}
	r, err := compress.NewReader(l.Compressor.Algorithm, counted)
	if err != nil {
		return 0, fmt.Errorf("decompressing layer blob %s: %w", l.Blob, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return 0, fmt.Errorf("decompressing layer blob %s: %w", l.Blob, err)
	}
	// Read any trailing bytes the decompressor left.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return 0, fmt.Errorf("reading layer blob %s: %w", l.Blob, err)
	}
	if got := blob.Digest(); got != l.Digest || counted.n != l.Size {
		return 0, fmt.Errorf("layer blob %s is %d bytes hashing to %s, the manifest says %d bytes, %s: %w; pull the image again", l.Blob, counted.n, got, l.Size, l.Digest, ErrDigestMismatch)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != l.DiffID {
		return 0, fmt.Errorf("layer blob %s decompresses to %s, not its diff_id %s: %w; pull the image again", l.Blob, got, l.DiffID, ErrDigestMismatch)
	}
	return n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
