package pull

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// parseManifest returns the image manifest in data, following an index or
// manifest list to the instance for platform want (one level deep).
// Parsing and the platform choice are containers/image's (its manifest
// package), as skopeo and podman do them.
func parseManifest(src source, file string, data []byte, want ocispec.Platform) (manifestInfo, error) {
	for depth := 0; ; depth++ {
		mt := manifest.GuessMIMEType(data)
		switch {
		case mt == manifest.DockerV2Schema1MediaType || mt == manifest.DockerV2Schema1SignedMediaType:
			return manifestInfo{}, fmt.Errorf("manifest %s of %s is Docker schema 1, which nixoci does not read: pull the image from a registry that serves schema 2 or OCI", file, src.name())
		case manifest.MIMETypeIsMultiImage(mt):
			if depth > 0 {
				return manifestInfo{}, fmt.Errorf("manifest %s of %s: nested indexes are not supported", file, src.name())
			}
			list, err := manifest.ListFromBlob(data, mt)
			if err != nil {
				return manifestInfo{}, fmt.Errorf("parsing index %s of %s: %w", file, src.name(), err)
			}
			d, err := choose(list, want)
			if err != nil {
				return manifestInfo{}, fmt.Errorf("index %s of %s: %w", file, src.name(), err)
			}
			if file, err = src.manifest(d); err != nil {
				return manifestInfo{}, fmt.Errorf("%s for %s: %w", src.name(), platformString(want), err)
			}
			inst, err := list.Instance(d)
			if err != nil {
				return manifestInfo{}, fmt.Errorf("index %s of %s: %w", file, src.name(), err)
			}
			if data, err = readVerified(file, d, inst.Size); err != nil {
				return manifestInfo{}, fmt.Errorf("manifest of %s for %s: %w", src.name(), platformString(want), err)
			}
			continue
		case mt == ocispec.MediaTypeImageManifest || mt == manifest.DockerV2Schema2MediaType:
		default:
			return manifestInfo{}, fmt.Errorf("manifest %s of %s has media type %q: expected an OCI or Docker schema 2 image manifest or index", file, src.name(), mt)
		}
		m, err := manifest.FromBlob(data, mt)
		if err != nil {
			return manifestInfo{}, fmt.Errorf("parsing manifest %s of %s: %w", file, src.name(), err)
		}
		cfg := m.ConfigInfo()
		if cfg.Digest == "" {
			return manifestInfo{}, fmt.Errorf("manifest %s of %s has no config", file, src.name())
		}
		if cmt := cfg.MediaType; cmt != ocispec.MediaTypeImageConfig && cmt != manifest.DockerV2Schema2ConfigMediaType {
			return manifestInfo{}, fmt.Errorf("manifest %s of %s has config media type %q: it is not a container image", file, src.name(), cmt)
		}
		info := manifestInfo{config: cfg}
		for _, l := range m.LayerInfos() {
			info.layers = append(info.layers, l.BlobInfo)
		}
		return info, nil
	}
}

// manifestInfo is what an image manifest says: its config and layer blobs.
type manifestInfo struct {
	config types.BlobInfo
	layers []types.BlobInfo
}

// choose picks the index entry for platform want, as containers/image
// chooses it; when nothing matches, the error lists what the index has.
func choose(list manifest.List, want ocispec.Platform) (digest.Digest, error) {
	sys := &types.SystemContext{OSChoice: want.OS, ArchitectureChoice: want.Architecture, VariantChoice: want.Variant}
	d, err := list.ChooseInstance(sys)
	if err == nil {
		return d, nil
	}
	var have []string
	for _, i := range list.Instances() {
		if u, err := list.Instance(i); err == nil && u.ReadOnly.Platform != nil {
			have = append(have, platformString(*u.ReadOnly.Platform))
		}
	}
	sort.Strings(have)
	return "", fmt.Errorf("%w %s: it has %s; choose one with the os/arch/variant options", ErrNoPlatform, platformString(want), strings.Join(have, ", "))
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
