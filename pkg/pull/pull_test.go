package pull

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
)

func sha(data []byte) digest.Digest {
	sum := sha256.Sum256(data)
	return digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func tarOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t *testing.T, data []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(data, nil)
}

// fixture is one synthetic single-platform image.
type fixture struct {
	manifest []byte
	config   []byte
	blobs    map[digest.Digest][]byte // config and layers
	want     *descriptor.Image        // Blob paths relative to the blob dir
}

// layerKind says how a fixture layer is stored.
type layerKind struct {
	mediaType, ociType string
	encode             func(*testing.T, []byte) []byte
}

var (
	gzipOCI    = layerKind{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerGzip, gzipOf}
	zstdOCI    = layerKind{ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerZstd, zstdOf}
	plainOCI   = layerKind{ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayer, func(_ *testing.T, b []byte) []byte { return b }}
	gzipDocker = layerKind{"application/vnd.docker.image.rootfs.diff.tar.gzip", ocispec.MediaTypeImageLayerGzip, gzipOf}
)

func makeFixture(t *testing.T, arch, variant string, docker bool, kinds ...layerKind) fixture {
	t.Helper()
	created := time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
	f := fixture{blobs: map[digest.Digest][]byte{}}
	cfg := ocispec.Image{
		Created:  &created,
		Author:   "builder",
		Platform: ocispec.Platform{Architecture: arch, OS: "linux", Variant: variant},
		Config:   ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}, Labels: map[string]string{"arch": arch}},
		RootFS:   ocispec.RootFS{Type: "layers"},
		// An empty-layer entry first: history must pair with layers by
		// skipping it.
		History: []ocispec.History{{Created: &created, CreatedBy: "ENV PATH=/bin", EmptyLayer: true}},
	}
	f.want = &descriptor.Image{
		Nixoci: descriptor.Version, Architecture: arch, OS: "linux", Variant: variant,
		Created: &created, Author: "builder", Config: cfg.Config,
	}
	var layers []ocispec.Descriptor
	for i, k := range kinds {
		tarBytes := tarOf(t, "file"+string(rune('0'+i)), arch+" layer "+k.mediaType)
		blob := k.encode(t, tarBytes)
		d := sha(blob)
		f.blobs[d] = blob
		layers = append(layers, ocispec.Descriptor{MediaType: k.mediaType, Digest: d, Size: int64(len(blob))})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, sha(tarBytes))
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "ADD layer " + string(rune('0'+i))})
		f.want.Layers = append(f.want.Layers, descriptor.Layer{
			MediaType: k.ociType, Digest: d, Size: int64(len(blob)),
			DiffID: sha(tarBytes), UncompressedSize: int64(len(tarBytes)),
			Compressor: descriptor.Compressor{Algorithm: descriptor.AlgorithmOf(k.ociType)},
			Blob:       d.Encoded(),
			History:    &descriptor.History{Created: &created, CreatedBy: "ADD layer " + string(rune('0'+i))},
		})
	}
	var err error
	if f.config, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	f.blobs[sha(f.config)] = f.config
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageManifest,
		"config":        ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: sha(f.config), Size: int64(len(f.config))},
		"layers":        layers,
	}
	if docker {
		m["mediaType"] = manifest.DockerV2Schema2MediaType
		m["config"] = ocispec.Descriptor{MediaType: manifest.DockerV2Schema2ConfigMediaType, Digest: sha(f.config), Size: int64(len(f.config))}
	}
	if f.manifest, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return f
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeDir writes a dir: layout holding fixtures; with more than one, an
// index (OCI, or a Docker list) goes in manifest.json and each manifest in
// HEX.manifest.json.
func writeDir(t *testing.T, dockerList bool, fs ...fixture) string {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "version"), []byte("Directory Transport Version: 1.1\n"))
	for _, f := range fs {
		for d, b := range f.blobs {
			write(t, filepath.Join(dir, d.Encoded()), b)
		}
	}
	if len(fs) == 1 {
		write(t, filepath.Join(dir, "manifest.json"), fs[0].manifest)
		return dir
	}
	write(t, filepath.Join(dir, "manifest.json"), indexOf(t, dockerList, fs...))
	for _, f := range fs {
		write(t, filepath.Join(dir, sha(f.manifest).Encoded()+".manifest.json"), f.manifest)
	}
	return dir
}

func indexOf(t *testing.T, dockerList bool, fs ...fixture) []byte {
	t.Helper()
	var entries []ocispec.Descriptor
	// An attestation-like entry without a usable platform comes first.
	entries = append(entries, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: sha([]byte("att")), Size: 3, Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}})
	for _, f := range fs {
		entries = append(entries, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: sha(f.manifest), Size: int64(len(f.manifest)),
			Platform: &ocispec.Platform{OS: f.want.OS, Architecture: f.want.Architecture, Variant: f.want.Variant},
		})
	}
	mt := ocispec.MediaTypeImageIndex
	if dockerList {
		mt = manifest.DockerV2ListMediaType
	}
	data, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mt, "manifests": entries})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// expect returns f.want with blob paths under dir.
func expect(f fixture, dir string) *descriptor.Image {
	want := *f.want
	want.Layers = nil
	for _, l := range f.want.Layers {
		l.Blob = filepath.Join(dir, l.Blob)
		want.Layers = append(want.Layers, l)
	}
	return &want
}

func TestFromDir(t *testing.T) {
	amd := makeFixture(t, "amd64", "", false, gzipOCI, zstdOCI, plainOCI)
	arm := makeFixture(t, "arm64", "v8", false, gzipOCI)
	armv7 := makeFixture(t, "arm", "v7", true, gzipDocker)
	docker := makeFixture(t, "amd64", "", true, gzipDocker, gzipDocker)

	tests := []struct {
		name string
		dir  string
		opts Options
		want fixture
	}{
		{"oci manifest", writeDir(t, false, amd), Options{Arch: "amd64"}, amd},
		{"docker schema2", writeDir(t, false, docker), Options{Arch: "x86_64"}, docker},
		{"index picks arm64", writeDir(t, false, amd, arm, armv7), Options{Arch: "arm64"}, arm},
		{"index picks arm64 by variant", writeDir(t, false, amd, arm), Options{Arch: "aarch64", Variant: "v8"}, arm},
		{"index picks amd64", writeDir(t, false, arm, amd), Options{Arch: "amd64", OS: "linux"}, amd},
		{"docker list picks arm", writeDir(t, true, amd, armv7), Options{Arch: "armv7l"}, armv7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Name, tt.opts.Tag = "Base/Image", "1.0"
			got, err := FromDir(context.Background(), tt.dir, tt.opts)
			if err != nil {
				t.Fatalf("FromDir() error = %v", err)
			}
			want := expect(tt.want, tt.dir)
			want.Name, want.Tag = "base/image", "1.0"
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("FromDir() (-want +got):\n%s", diff)
			}
			// The descriptor must give a manifest whose layers are the
			// pulled blobs, and survive the descriptor format.
			img, err := image.FromDescriptor(context.Background(), got)
			if err != nil {
				t.Fatalf("image.FromDescriptor() error = %v", err)
			}
			m, _, err := image.Manifest(img)
			if err != nil {
				t.Fatalf("image.Manifest() error = %v", err)
			}
			var om ocispec.Manifest
			if err := json.Unmarshal(m, &om); err != nil {
				t.Fatal(err)
			}
			for i, l := range om.Layers {
				if _, ok := tt.want.blobs[l.Digest]; !ok || l.MediaType != tt.want.want.Layers[i].MediaType {
					t.Errorf("manifest layer %d = %v, want a pulled blob with OCI media type", i, l)
				}
			}
			data, err := descriptor.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := descriptor.ParseImage("pulled", data); err != nil {
				t.Errorf("ParseImage() error = %v", err)
			}
		})
	}
}

func TestFromDirErrors(t *testing.T) {
	amd := makeFixture(t, "amd64", "", false, gzipOCI, plainOCI)
	arm := makeFixture(t, "arm64", "", false, gzipOCI)
	configHex := sha(amd.config).Encoded()
	gzLayer := amd.want.Layers[0].Blob

	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		opts    Options
		is      error
		wantErr string
	}{
		{
			name: "config digest mismatch",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd)
				write(t, filepath.Join(d, configHex), []byte(`{"x":1}`))
				return d
			},
			is: ErrDigestMismatch,
		},
		{
			name: "layer digest mismatch",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd)
				write(t, filepath.Join(d, gzLayer), gzipOf(t, tarOf(t, "evil", "x")))
				return d
			},
			is: ErrDigestMismatch,
		},
		{
			name: "instance manifest digest mismatch",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd, arm)
				write(t, filepath.Join(d, sha(arm.manifest).Encoded()+".manifest.json"), amd.manifest)
				return d
			},
			opts: Options{Arch: "arm64"},
			is:   ErrDigestMismatch,
		},
		{
			name:  "platform not in index",
			setup: func(t *testing.T) string { return writeDir(t, false, amd, arm) },
			opts:  Options{Arch: "s390x"},
			is:    ErrNoPlatform, wantErr: "linux/amd64, linux/arm64",
		},
		{
			name: "missing blob",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd)
				os.Remove(filepath.Join(d, gzLayer))
				return d
			},
			wantErr: "blob " + amd.want.Layers[0].Digest.String() + " missing",
		},
		{
			name: "unknown version",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd)
				write(t, filepath.Join(d, "version"), []byte("v9\n"))
				return d
			},
			wantErr: `version "v9"`,
		},
		{
			name: "no manifest",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd)
				os.Remove(filepath.Join(d, "manifest.json"))
				return d
			},
			wantErr: "manifest.json",
		},
		{
			name: "schema 1",
			setup: func(t *testing.T) string {
				d := writeDir(t, false, amd)
				write(t, filepath.Join(d, "manifest.json"), []byte(`{"schemaVersion":1,"fsLayers":[]}`))
				return d
			},
			wantErr: "schema 1",
		},
		{
			name: "diff_ids count",
			setup: func(t *testing.T) string {
				f := makeFixture(t, "amd64", "", false, gzipOCI)
				var m map[string]any
				json.Unmarshal(f.manifest, &m)
				m["layers"] = append(m["layers"].([]any), m["layers"].([]any)[0])
				f.manifest, _ = json.Marshal(m)
				return writeDir(t, false, f)
			},
			wantErr: "1 diff_ids for 2 layers",
		},
		{
			name: "unsupported layer type",
			setup: func(t *testing.T) string {
				f := makeFixture(t, "amd64", "", false, layerKind{"application/vnd.oci.image.layer.v1.tar+bzip2", "application/vnd.oci.image.layer.v1.tar+bzip2", gzipOf})
				return writeDir(t, false, f)
			},
			wantErr: "tar+bzip2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			if tt.opts.Arch == "" {
				tt.opts.Arch = "amd64"
			}
			_, err := FromDir(context.Background(), dir, tt.opts)
			if err == nil {
				t.Fatal("FromDir() error = nil, want an error")
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("FromDir() error = %v, want it to name %s", err, dir)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("FromDir() error = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("FromDir() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestSkipLayers(t *testing.T) {
	f := makeFixture(t, "amd64", "", false, gzipOCI, plainOCI)
	dir := writeDir(t, false, f)
	// A corrupt compressed layer goes unnoticed when layers are skipped.
	write(t, filepath.Join(dir, f.want.Layers[0].Blob), []byte("garbage"))
	got, err := FromDir(context.Background(), dir, Options{Arch: "amd64", SkipLayers: true})
	if err != nil {
		t.Fatalf("FromDir(SkipLayers) error = %v", err)
	}
	if got.Layers[0].UncompressedSize != 0 {
		t.Errorf("compressed layer UncompressedSize = %d, want 0 (unknown)", got.Layers[0].UncompressedSize)
	}
	if got.Layers[1].UncompressedSize != f.want.Layers[1].UncompressedSize {
		t.Errorf("plain layer UncompressedSize = %d, want %d", got.Layers[1].UncompressedSize, f.want.Layers[1].UncompressedSize)
	}
}

func TestFromManifestSpec(t *testing.T) {
	amd := makeFixture(t, "amd64", "", false, gzipOCI, zstdOCI)
	arm := makeFixture(t, "arm64", "", true, gzipDocker)
	for _, tt := range []struct {
		name     string
		manifest []byte
		extra    []fixture // manifests stored as blobs
		opts     Options
		want     fixture
	}{
		{"single manifest", arm.manifest, nil, Options{Arch: "arm64"}, arm},
		{"index", indexOf(t, false, amd, arm), []fixture{amd, arm}, Options{Arch: "amd64"}, amd},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			blobDir := filepath.Join(dir, "blobs")
			if err := os.Mkdir(blobDir, 0o755); err != nil {
				t.Fatal(err)
			}
			blobs := map[digest.Digest]string{}
			for _, f := range []fixture{amd, arm} {
				for d, b := range f.blobs {
					write(t, filepath.Join(blobDir, d.Encoded()), b)
					blobs[d] = filepath.Join("blobs", d.Encoded())
				}
			}
			for _, f := range tt.extra {
				write(t, filepath.Join(blobDir, "m-"+sha(f.manifest).Encoded()), f.manifest)
				blobs[sha(f.manifest)] = filepath.Join("blobs", "m-"+sha(f.manifest).Encoded())
			}
			write(t, filepath.Join(dir, "manifest.json"), tt.manifest)
			spec, _ := json.Marshal(ManifestSpec{Manifest: "manifest.json", Blobs: blobs})
			write(t, filepath.Join(dir, "spec.json"), spec)

			got, err := FromManifestSpec(context.Background(), filepath.Join(dir, "spec.json"), tt.opts)
			if err != nil {
				t.Fatalf("FromManifestSpec() error = %v", err)
			}
			if diff := cmp.Diff(expect(tt.want, blobDir), got); diff != "" {
				t.Errorf("FromManifestSpec() (-want +got):\n%s", diff)
			}

			// A blob left out of the list is named.
			missing := tt.want.want.Layers[0].Digest
			delete(blobs, missing)
			_, err = FromManifest(context.Background(), filepath.Join(dir, "manifest.json"), absAll(blobs, dir), tt.opts)
			if err == nil || !strings.Contains(err.Error(), missing.String()) {
				t.Errorf("FromManifest() without %s error = %v, want one naming it", missing, err)
			}
		})
	}
	for _, bad := range []string{`{"blobs":{}}`, `{"manifest":"m","blobs":{"nope":"x"}}`, `{"manifest":"m","extra":1}`} {
		p := filepath.Join(t.TempDir(), "spec.json")
		write(t, p, []byte(bad))
		if _, err := LoadManifestSpec(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadManifestSpec(%s) error = %v, want one naming %s", bad, err, p)
		}
	}
}

func absAll(blobs map[digest.Digest]string, dir string) map[digest.Digest]string {
	out := map[digest.Digest]string{}
	for d, p := range blobs {
		out[d] = filepath.Join(dir, p)
	}
	return out
}
