package descriptor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Index is the document `nixoci index` and the Nix library's
// buildImageIndex write: images of one name for several platforms, pushed
// as an OCI image index. It carries the format version in "nixoci" like
// the other documents.
type Index struct {
	// Nixoci is the format version; always Version when written by nixoci.
	Nixoci int `json:"nixoci"`
	// Name and Tag are informational defaults for copy scripts.
	Name string `json:"name,omitempty"`
	Tag  string `json:"tag,omitempty"`
	// Manifests are the images, one per platform, in the order given.
	Manifests []IndexEntry `json:"manifests"`
}

// IndexEntry is one image of an index.
type IndexEntry struct {
	// Image is the image descriptor file. A relative path is taken from
	// the index file's directory.
	Image string `json:"image"`
	// Digest and Size are those of the image's OCI manifest as the image
	// descriptor describes it (compressed layers): what an OCI index
	// entry records, and a check that the image did not change since.
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// Platform is the image's: architecture, os and variant in OCI
	// naming (os.version and os.features when set).
	Platform ocispec.Platform `json:"platform"`
}

// IsIndex reports whether the descriptor at path (a file, or a directory
// holding image.json) is an index document.
func IsIndex(path string) (bool, error) {
	file, err := ResolvePath(path)
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return false, fmt.Errorf("reading descriptor: %w", err)
	}
	h, err := parseHeader(file, data)
	if err != nil {
		return false, err
	}
	return h.Nixoci != nil && h.isIndex(), nil
}

// LoadIndex reads an index document. Relative image paths are returned
// as written; ImagePath resolves them.
func LoadIndex(path string) (*Index, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading index descriptor: %w", err)
	}
	return ParseIndex(path, data)
}

// ParseIndex parses an index document; name is used in error messages.
func ParseIndex(name string, data []byte) (*Index, error) {
	h, err := parseHeader(name, data)
	if err != nil {
		return nil, err
	}
	if h.Nixoci == nil || !h.isIndex() {
		what := "an image descriptor"
		if h.Nixoci != nil && h.isLayers() {
			what = "a layers descriptor"
		}
		return nil, fmt.Errorf("%s is %s, not an index descriptor: write an index of images with `nixoci index` (or buildImageIndex)", name, what)
	}
	var idx Index
	if err := strictUnmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("parsing index descriptor %s: %w", name, err)
	}
	if err := idx.Validate(); err != nil {
		return nil, fmt.Errorf("index descriptor %s: %w", name, err)
	}
	return &idx, nil
}

// ImagePath returns the image descriptor path of entry e of the index
// file indexFile: e.Image, taken from indexFile's directory when relative.
func (e IndexEntry) ImagePath(indexFile string) string {
	if filepath.IsAbs(e.Image) {
		return e.Image
	}
	return filepath.Join(filepath.Dir(indexFile), e.Image)
}

// Validate checks that the index has images, that each says where it is,
// what its manifest hashes to and its platform, and that no two images
// have the same platform (a pull could not choose between them).
func (idx *Index) Validate() error {
	if len(idx.Manifests) == 0 {
		return errors.New("no images: an index lists at least one image")
	}
	seen := map[string]string{}
	for i, e := range idx.Manifests {
		if e.Image == "" {
			return fmt.Errorf("image %d: no image descriptor path", i)
		}
		if err := e.Digest.Validate(); err != nil {
			return fmt.Errorf("image %d (%s): invalid manifest digest %q: %w", i, e.Image, e.Digest, err)
		}
		if e.Size <= 0 {
			return fmt.Errorf("image %d (%s): manifest size %d: must be positive", i, e.Image, e.Size)
		}
		if e.Platform.Architecture == "" || e.Platform.OS == "" {
			return fmt.Errorf("image %d (%s): platform needs an architecture and an os", i, e.Image)
		}
		key := PlatformString(e.Platform)
		if other, ok := seen[key]; ok {
			return fmt.Errorf("images %s and %s are both for %s: an index holds one image per platform", other, e.Image, key)
		}
		seen[key] = e.Image
	}
	return nil
}

// PlatformString writes a platform as os/architecture[/variant], with
// the os version in parentheses when set.
func PlatformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	if p.OSVersion != "" {
		s += " (" + p.OSVersion + ")"
	}
	return s
}
