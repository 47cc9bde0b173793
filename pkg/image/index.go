package image

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Index is a multi-platform image as a value: images of one name, one per
// platform, served as an OCI image index.
type Index struct {
	// Name and Tag are informational defaults for copy scripts.
	Name, Tag string
	// Images are the images in the index's order.
	Images []IndexImage
}

// IndexImage is one image of an index.
type IndexImage struct {
	// Path is the image descriptor file the index records.
	Path string
	// Image is the image.
	Image *Image
}

// AssembleIndex makes an index of images: name (lower-cased, required)
// and tag as for Assemble, at least one image, no two of the same
// platform.
func AssembleIndex(name, tag string, images []IndexImage) (*Index, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return nil, errors.New("assembling index: no name: give the index a name")
	}
	idx := &Index{Name: name, Tag: tag, Images: images}
	if _, err := idx.Descriptor(); err != nil {
		return nil, fmt.Errorf("assembling index %s: %w", name, err)
	}
	return idx, nil
}

// Platform returns img's platform in OCI form.
func Platform(img *Image) ocispec.Platform {
	return ocispec.Platform{Architecture: img.Architecture, OS: img.OS, Variant: img.Variant}
}

// Descriptor returns the index document that records idx: for each image
// its path, platform and the digest and size of its manifest.
func (idx *Index) Descriptor() (*descriptor.Index, error) {
	d := &descriptor.Index{Nixoci: descriptor.Version, Name: idx.Name, Tag: idx.Tag}
	for i, e := range idx.Images {
		if e.Image == nil || e.Path == "" {
			return nil, fmt.Errorf("image %d: no image or no descriptor path", i)
		}
		m, _, err := Manifest(e.Image)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", e.Path, err)
		}
		d.Manifests = append(d.Manifests, descriptor.IndexEntry{
			Image:    e.Path,
			Digest:   digest.FromBytes(m),
			Size:     int64(len(m)),
			Platform: Platform(e.Image),
		})
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// WriteIndex writes idx's document to path (atomically; see
// descriptor.Write).
func WriteIndex(path string, idx *Index) error {
	d, err := idx.Descriptor()
	if err != nil {
		return fmt.Errorf("writing index descriptor %s: %w", path, err)
	}
	return descriptor.Write(path, d)
}

// ErrIndexOutdated is wrapped by the error for an index whose image no
// longer has the manifest or platform the index recorded.
var ErrIndexOutdated = errors.New("image changed since the index was written")

// LoadIndex reads an index document and loads each image it lists (see
// Load), checking that each still has the platform and manifest digest
// the index recorded.
func LoadIndex(ctx context.Context, path string) (*Index, error) {
	file, err := descriptor.ResolvePath(path)
	if err != nil {
		return nil, err
	}
	d, err := descriptor.LoadIndex(file)
	if err != nil {
		return nil, err
	}
	idx := &Index{Name: d.Name, Tag: d.Tag}
	for _, e := range d.Manifests {
		p := e.ImagePath(file)
		img, err := Load(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("index descriptor %s: %w", file, err)
		}
		m, _, err := Manifest(img)
		if err != nil {
			return nil, fmt.Errorf("index descriptor %s: image %s: %w", file, p, err)
		}
		switch got := Platform(img); {
		case descriptor.PlatformString(got) != descriptor.PlatformString(withoutOSExtras(e.Platform)):
			return nil, fmt.Errorf("index descriptor %s: image %s is for %s, the index says %s: %w: write the index again", file, p, descriptor.PlatformString(got), descriptor.PlatformString(e.Platform), ErrIndexOutdated)
		case digest.FromBytes(m) != e.Digest:
			return nil, fmt.Errorf("index descriptor %s: image %s has manifest %s, the index says %s: %w: write the index again", file, p, digest.FromBytes(m), e.Digest, ErrIndexOutdated)
		}
		idx.Images = append(idx.Images, IndexImage{Path: p, Image: img})
	}
	return idx, nil
}

// withoutOSExtras is p without os.version and os.features, which images
// do not record.
func withoutOSExtras(p ocispec.Platform) ocispec.Platform {
	return ocispec.Platform{Architecture: p.Architecture, OS: p.OS, Variant: p.Variant}
}

// IndexManifest returns the OCI image index listing manifests (each with
// its media type, digest, size and platform), in order, without
// annotations: the same entries give the same bytes.
func IndexManifest(manifests []ocispec.Descriptor) ([]byte, error) {
	if len(manifests) == 0 {
		return nil, errors.New("an index lists at least one manifest")
	}
	return marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	})
}

// ResolveImagePath returns the absolute, symlink-free path of an image
// descriptor given as a file or a directory holding image.json (such as
// a Nix result link), which is what an index should record.
func ResolveImagePath(path string) (string, error) {
	file, err := descriptor.ResolvePath(path)
	if err != nil {
		return "", err
	}
	resolved, err := filepath.EvalSymlinks(file)
	if err != nil {
		return "", fmt.Errorf("resolving image descriptor %s: %w", path, err)
	}
	return filepath.Abs(resolved)
}
