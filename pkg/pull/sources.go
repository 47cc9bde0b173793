package pull

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// dirVersions are the containers/image dir: layout versions this reads.
func dirVersions() []string {
	return []string{"Directory Transport Version: 1.1\n", "Directory Transport Version: 1.0\n"}
}

// FromDir describes the image in a containers/image dir: layout, as written
// by `nixoci copy docker://… dir:DIR` (or `skopeo copy`): manifest.json,
// a version file, and blobs named by their hex digest. When manifest.json is
// an index or manifest list (a copy with --all), the instance for the
// platform in opts is read from HEX.manifest.json. The descriptor's layers
// are Blob layers pointing at the blob files.
func FromDir(ctx context.Context, dir string, opts Options) (*descriptor.Image, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image directory %s: %w", dir, err)
	}
	version, err := os.ReadFile(filepath.Join(abs, "version"))
	switch {
	case os.IsNotExist(err):
		logs.Or(opts.Log).Warnf("image directory %s has no version file; reading it as a containers/image dir: layout anyway", abs)
	case err != nil:
		return nil, fmt.Errorf("reading image directory %s: %w", abs, err)
	default:
		known := false
		for _, v := range dirVersions() {
			known = known || string(version) == v
		}
		if !known {
			return nil, fmt.Errorf("image directory %s has version %q; nixoci reads containers/image dir: layouts of version 1.0 and 1.1", abs, strings.TrimSpace(string(version)))
		}
	}
	return describe(ctx, dirSource{dir: abs}, filepath.Join(abs, "manifest.json"), opts)
}

// FromManifest describes an image given as a manifest file and one file
// per blob, keyed by digest (in Nix: one fixed-output derivation per blob).
// blobs must hold the config and every layer; when the manifest is an index,
// it must also hold the chosen platform's manifest.
func FromManifest(ctx context.Context, manifestPath string, blobs map[digest.Digest]string, opts Options) (*descriptor.Image, error) {
	abs := make(map[digest.Digest]string, len(blobs))
	for d, p := range blobs {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", d, err)
		}
		abs[d] = a
	}
	return describe(ctx, mapSource{manifestFile: manifestPath, blobs: abs}, manifestPath, opts)
}

// ManifestSpec is the input of `nixoci image-from-manifest`: a JSON file
//
//	{"manifest": "/nix/store/…-manifest.json",
//	 "blobs": {"sha256:…": "/nix/store/…-blob", …}}
//
// Relative paths are taken from the spec file's directory.
type ManifestSpec struct {
	Manifest string                   `json:"manifest"`
	Blobs    map[digest.Digest]string `json:"blobs"`
}

// LoadManifestSpec reads a ManifestSpec file.
func LoadManifestSpec(path string) (*ManifestSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest spec: %w", err)
	}
	var spec ManifestSpec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("parsing manifest spec %s: %w (expected {\"manifest\": FILE, \"blobs\": {DIGEST: FILE, …}})", path, err)
	}
	if spec.Manifest == "" {
		return nil, fmt.Errorf("manifest spec %s: no \"manifest\": give the manifest file", path)
	}
	base := filepath.Dir(path)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	spec.Manifest = rel(spec.Manifest)
	for d, p := range spec.Blobs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("manifest spec %s: blob key %q: %w", path, d, err)
		}
		spec.Blobs[d] = rel(p)
	}
	return &spec, nil
}

// FromManifestSpec is FromManifest with the input read from a ManifestSpec file.
func FromManifestSpec(ctx context.Context, path string, opts Options) (*descriptor.Image, error) {
	spec, err := LoadManifestSpec(path)
	if err != nil {
		return nil, err
	}
	return FromManifest(ctx, spec.Manifest, spec.Blobs, opts)
}
