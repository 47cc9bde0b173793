package pull

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// anyManifest holds the fields that tell manifests and indexes apart.
type anyManifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	FSLayers      json.RawMessage      `json:"fsLayers"`
}

// parseManifest returns the image manifest in data, following an index or
// manifest list to the instance for platform want (one level deep).
func parseManifest(src source, file string, data []byte, want ocispec.Platform) (ocispec.Manifest, error) {
	for depth := 0; ; depth++ {
		var m anyManifest
		if err := json.Unmarshal(data, &m); err != nil {
			return ocispec.Manifest{}, fmt.Errorf("parsing manifest %s of %s: %w", file, src.name(), err)
		}
		switch {
		case m.MediaType == dockerSchema1 || m.MediaType == dockerSchema1Sign || m.SchemaVersion == 1 || m.FSLayers != nil:
			return ocispec.Manifest{}, fmt.Errorf("manifest %s of %s is Docker schema 1, which nixoci does not read: pull the image from a registry that serves schema 2 or OCI", file, src.name())
		case m.SchemaVersion != 2:
			return ocispec.Manifest{}, fmt.Errorf("manifest %s of %s has schemaVersion %d: expected an OCI or Docker schema 2 manifest", file, src.name(), m.SchemaVersion)
		case m.MediaType == ocispec.MediaTypeImageIndex || m.MediaType == dockerManifestList || (m.MediaType == "" && m.Manifests != nil):
			if depth > 0 {
				return ocispec.Manifest{}, fmt.Errorf("manifest %s of %s: nested indexes are not supported", file, src.name())
			}
			d, err := choose(m.Manifests, want)
			if err != nil {
				return ocispec.Manifest{}, fmt.Errorf("index %s of %s: %w", file, src.name(), err)
			}
			if file, err = src.manifest(d.Digest); err != nil {
				return ocispec.Manifest{}, fmt.Errorf("%s for %s: %w", src.name(), platformString(want), err)
			}
			if data, err = readVerified(file, d.Digest, d.Size); err != nil {
				return ocispec.Manifest{}, fmt.Errorf("manifest of %s for %s: %w", src.name(), platformString(want), err)
			}
			continue
		case m.MediaType == ocispec.MediaTypeImageManifest || m.MediaType == dockerManifest || (m.MediaType == "" && m.Config != nil):
		default:
			return ocispec.Manifest{}, fmt.Errorf("manifest %s of %s has media type %q: expected an OCI or Docker schema 2 image manifest or index", file, src.name(), m.MediaType)
		}
		if m.Config == nil {
			return ocispec.Manifest{}, fmt.Errorf("manifest %s of %s has no config", file, src.name())
		}
		if mt := m.Config.MediaType; mt != ocispec.MediaTypeImageConfig && mt != dockerConfig {
			return ocispec.Manifest{}, fmt.Errorf("manifest %s of %s has config media type %q: it is not a container image", file, src.name(), mt)
		}
		return ocispec.Manifest{MediaType: m.MediaType, Config: *m.Config, Layers: m.Layers}, nil
	}
}

// choose picks the index entry for platform want. An empty variant in want
// prefers an entry without variant or with the architecture's default
// (v8 for arm64, v7 for arm), then takes the first match.
func choose(entries []ocispec.Descriptor, want ocispec.Platform) (ocispec.Descriptor, error) {
	var matches []ocispec.Descriptor
	var have []string
	for _, e := range entries {
		p := e.Platform
		if p == nil {
			continue
		}
		have = append(have, platformString(*p))
		if p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		if want.Variant != "" && normVariant(p.Architecture, p.Variant) != normVariant(want.Architecture, want.Variant) {
			continue
		}
		matches = append(matches, e)
	}
	if len(matches) == 0 {
		sort.Strings(have)
		return ocispec.Descriptor{}, fmt.Errorf("%w %s: it has %s; choose one with the os/arch/variant options", ErrNoPlatform, platformString(want), strings.Join(have, ", "))
	}
	for _, m := range matches {
		if normVariant(m.Platform.Architecture, m.Platform.Variant) == normVariant(want.Architecture, "") {
			return m, nil
		}
	}
	return matches[0], nil
}

// normVariant gives the variant an architecture implies when none is named.
func normVariant(arch, variant string) string {
	if variant != "" {
		return variant
	}
	switch arch {
	case "arm64":
		return "v8"
	case "arm":
		return "v7"
	}
	return ""
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// dirSource is a containers/image dir: layout.
type dirSource struct{ dir string }

func (s dirSource) name() string { return "image directory " + s.dir }

func (s dirSource) blob(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob digest %q: %w", d, err)
	}
	// Version 1.1 names blobs by their hex digest; 1.0 added ".tar" to layers.
	for _, name := range []string{d.Encoded(), d.Encoded() + ".tar"} {
		p := filepath.Join(s.dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("blob %s missing from %s: the copy is incomplete, pull the image again", d, s.dir)
}

func (s dirSource) manifest(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("manifest digest %q: %w", d, err)
	}
	p := filepath.Join(s.dir, d.Encoded()+".manifest.json")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("manifest %s is not in the directory (was it copied without --all?): %w", d, err)
	}
	return p, nil
}

// mapSource is a manifest plus one file per blob.
type mapSource struct {
	manifestFile string
	blobs        map[digest.Digest]string
}

func (s mapSource) name() string { return "image manifest " + s.manifestFile }

func (s mapSource) blob(d digest.Digest) (string, error) {
	p, ok := s.blobs[d]
	if !ok {
		return "", fmt.Errorf("blob %s is not in the blob list: give a file for every blob the manifest names", d)
	}
	return p, nil
}

func (s mapSource) manifest(d digest.Digest) (string, error) {
	p, ok := s.blobs[d]
	if !ok {
		return "", fmt.Errorf("manifest %s is not in the blob list: give the platform's manifest, or add it to the blobs", d)
	}
	return p, nil
}
