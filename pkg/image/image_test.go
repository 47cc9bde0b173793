package image

import (
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
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

func fakeDigest(s string) digest.Digest {
	sum := sha256.Sum256([]byte(s))
	return digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func testLayer(name string, alg string) descriptor.Layer {
	l := descriptor.Layer{
		MediaType:        descriptor.MediaType(alg),
		Digest:           fakeDigest(name + "-blob"),
		Size:             int64(100 + len(name)),
		DiffID:           fakeDigest(name + "-tar"),
		UncompressedSize: int64(1000 + len(name)),
		Compressor:       descriptor.Compressor{Algorithm: alg},
		Paths:            []descriptor.Path{{Path: "/nix/store/" + name}},
	}
	if alg == descriptor.None {
		l.Digest, l.Size = l.DiffID, l.UncompressedSize
	}
	return l
}

func testImage() *descriptor.Image {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	return &descriptor.Image{
		Nixoci:       descriptor.Version,
		Name:         "hello",
		Architecture: "arm",
		OS:           "linux",
		Variant:      "v7",
		Created:      &created,
		Author:       "someone",
		Config: ocispec.ImageConfig{
			Env:    []string{"A=1", "B=2"},
			Cmd:    []string{"/bin/hello", "<&>"},
			Labels: map[string]string{"z": "1", "a": "2", "m": "3"},
		},
		Layers: []descriptor.Layer{
			func() descriptor.Layer {
				l := testLayer("one", descriptor.Gzip)
				l.History = &descriptor.History{CreatedBy: "nix", Author: "me", Comment: "first"}
				return l
			}(),
			testLayer("two", descriptor.Zstd),
			testLayer("three", descriptor.None),
		},
	}
}

func TestConfig(t *testing.T) {
	epoch := time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)
	tests := []struct {
		name    string
		img     func() *descriptor.Image
		created time.Time
	}{
		{"with created", testImage, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"default created", func() *descriptor.Image { i := testImage(); i.Created = nil; return i }, epoch},
		{"no layers", func() *descriptor.Image { i := testImage(); i.Layers = nil; return i }, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.img()
			data, err := Config(img)
			if err != nil {
				t.Fatalf("Config() error = %v", err)
			}
			again, err := Config(tt.img())
			if err != nil || string(again) != string(data) {
				t.Fatalf("Config() not deterministic: %s vs %s (%v)", data, again, err)
			}
			// rootfs.diff_ids must be an array even when empty.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			var rootfs map[string]json.RawMessage
			if err := json.Unmarshal(raw["rootfs"], &rootfs); err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(rootfs["diff_ids"])) == "null" {
				t.Errorf("Config() rootfs.diff_ids = null, want an array")
			}
			var got ocispec.Image
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			want := ocispec.Image{
				Created:  &tt.created,
				Author:   img.Author,
				Platform: ocispec.Platform{Architecture: img.Architecture, OS: img.OS, Variant: img.Variant},
				Config:   img.Config,
				RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
			}
			for _, l := range img.Layers {
				want.RootFS.DiffIDs = append(want.RootFS.DiffIDs, l.DiffID)
				h := ocispec.History{Created: &tt.created}
				if l.History != nil {
					h.CreatedBy, h.Author, h.Comment = l.History.CreatedBy, l.History.Author, l.History.Comment
				}
				want.History = append(want.History, h)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Config() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestManifest(t *testing.T) {
	for _, uncompressed := range []bool{false, true} {
		t.Run(map[bool]string{false: "compressed", true: "uncompressed"}[uncompressed], func(t *testing.T) {
			img := testImage()
			// A pulled Docker layer keeps its bytes but gets the OCI name.
			docker := testLayer("docker", descriptor.Gzip)
			docker.MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
			docker.Paths, docker.Blob = nil, "/nix/store/blob"
			img.Layers = append(img.Layers, docker)

			m, config, err := Manifest(img, uncompressed)
			if err != nil {
				t.Fatalf("Manifest() error = %v", err)
			}
			cfg, _ := Config(img)
			if string(cfg) != string(config) {
				t.Errorf("Manifest() config differs from Config()")
			}
			var got ocispec.Manifest
			if err := json.Unmarshal(m, &got); err != nil {
				t.Fatal(err)
			}
			if got.SchemaVersion != 2 || got.MediaType != ocispec.MediaTypeImageManifest {
				t.Errorf("Manifest() schemaVersion, mediaType = %d, %q", got.SchemaVersion, got.MediaType)
			}
			sum := sha256.Sum256(config)
			wantConfig := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest("sha256:" + hex.EncodeToString(sum[:])), Size: int64(len(config))}
			if diff := cmp.Diff(wantConfig, got.Config); diff != "" {
				t.Errorf("Manifest() config descriptor (-want +got):\n%s", diff)
			}
			var want []ocispec.Descriptor
			for _, l := range img.Layers {
				d := ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
				if l.Blob != "" {
					d.MediaType = ocispec.MediaTypeImageLayerGzip
				}
				if uncompressed {
					d = ocispec.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: l.DiffID, Size: l.UncompressedSize}
				}
				want = append(want, d)
			}
			if diff := cmp.Diff(want, got.Layers); diff != "" {
				t.Errorf("Manifest() layers (-want +got):\n%s", diff)
			}
			if got.Annotations != nil {
				t.Errorf("Manifest() annotations = %v, want none", got.Annotations)
			}
			d, err := ManifestDigest(img, uncompressed)
			if err != nil || d != digest.FromBytes(m) {
				t.Errorf("ManifestDigest() = %v, %v; want %v", d, err, digest.FromBytes(m))
			}
			cd, err := ConfigDigest(img)
			if err != nil || cd != wantConfig.Digest {
				t.Errorf("ConfigDigest() = %v, %v; want %v", cd, err, wantConfig.Digest)
			}
		})
	}
}

func TestManifestErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*descriptor.Image)
		is     error
	}{
		{"foreign", func(i *descriptor.Image) { i.Foreign = true }, ErrForeign},
		{"no architecture", func(i *descriptor.Image) { i.Architecture = "" }, nil},
		{"bad digest", func(i *descriptor.Image) { i.Layers[1].DiffID = "sha256:nothex" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := testImage()
			tt.mutate(img)
			_, _, err := Manifest(img, false)
			if err == nil {
				t.Fatal("Manifest() error = nil, want an error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Manifest() error = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestMergeConfig(t *testing.T) {
	tests := []struct {
		name       string
		base, over ocispec.ImageConfig
		want       ocispec.ImageConfig
	}{
		{
			name: "env merged by name",
			base: ocispec.ImageConfig{Env: []string{"PATH=/bin", "A=1", "B=2"}},
			over: ocispec.ImageConfig{Env: []string{"A=x", "C=3", "PATH=/usr/bin:/bin"}},
			want: ocispec.ImageConfig{Env: []string{"PATH=/usr/bin:/bin", "A=x", "B=2", "C=3"}},
		},
		{
			name: "base kept when unset",
			base: ocispec.ImageConfig{User: "1000", WorkingDir: "/w", Cmd: []string{"sh"}, Env: []string{"A=1"}},
			over: ocispec.ImageConfig{},
			want: ocispec.ImageConfig{User: "1000", WorkingDir: "/w", Cmd: []string{"sh"}, Env: []string{"A=1"}},
		},
		{
			name: "entrypoint without cmd clears base cmd",
			base: ocispec.ImageConfig{Entrypoint: []string{"/old"}, Cmd: []string{"--help"}},
			over: ocispec.ImageConfig{Entrypoint: []string{"/new"}},
			want: ocispec.ImageConfig{Entrypoint: []string{"/new"}},
		},
		{
			name: "cmd alone keeps entrypoint",
			base: ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"a"}},
			over: ocispec.ImageConfig{Cmd: []string{"b"}},
			want: ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"b"}},
		},
		{
			name: "maps merged",
			base: ocispec.ImageConfig{Labels: map[string]string{"a": "1", "b": "2"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}},
			over: ocispec.ImageConfig{Labels: map[string]string{"b": "3"}, ExposedPorts: map[string]struct{}{"443/tcp": {}}, Volumes: map[string]struct{}{"/data": {}}},
			want: ocispec.ImageConfig{Labels: map[string]string{"a": "1", "b": "3"}, ExposedPorts: map[string]struct{}{"80/tcp": {}, "443/tcp": {}}, Volumes: map[string]struct{}{"/data": {}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergeConfig(tt.base, tt.over)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MergeConfig() (-want +got):\n%s", diff)
			}
		})
	}
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	p := filepath.Join(dir, name)
	var data []byte
	switch v := v.(type) {
	case string:
		data = []byte(v)
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAssemble(t *testing.T) {
	dir := t.TempDir()
	base := &descriptor.Image{
		Architecture: "arm64",
		OS:           "linux",
		Config:       ocispec.ImageConfig{Env: []string{"PATH=/bin", "LANG=C"}, Cmd: []string{"sh"}, User: "nobody"},
		Layers:       []descriptor.Layer{testLayer("base", descriptor.Gzip)},
	}
	basePath := filepath.Join(dir, "base.json")
	if err := descriptor.Write(basePath, base); err != nil {
		t.Fatal(err)
	}
	l1 := &descriptor.Layers{Layers: []descriptor.Layer{testLayer("a", descriptor.Gzip), testLayer("b", descriptor.Gzip)}}
	l2 := &descriptor.Layers{Layers: []descriptor.Layer{testLayer("c", descriptor.Zstd)}}
	l1Path, l2Path := filepath.Join(dir, "l1.json"), filepath.Join(dir, "l2.json")
	for p, v := range map[string]*descriptor.Layers{l1Path: l1, l2Path: l2} {
		if err := descriptor.Write(p, v); err != nil {
			t.Fatal(err)
		}
	}
	plainCfg := writeJSON(t, dir, "plain.json", `{"Env":["LANG=C.UTF-8","X=1"],"Cmd":["/bin/app"],"Healthcheck":{"Test":["NONE"]}}`)
	fullCfg := writeJSON(t, dir, "full.json", `{"architecture":"s390x","author":"A. U. Thor","config":{"Entrypoint":["/e"]},"rootfs":{"type":"layers","diff_ids":[]}}`)
	caseCfg := writeJSON(t, dir, "case.json", `{"cmd":["x"]}`)
	badCfg := writeJSON(t, dir, "bad.json", `{"Cmd":`)
	listCfg := writeJSON(t, dir, "list.json", `["Cmd"]`)
	badLayers := writeJSON(t, dir, "badlayers.json", `{"nixoci": 99, "layers": []}`)
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)

	tests := []struct {
		name    string
		opts    AssembleOptions
		check   func(t *testing.T, img *descriptor.Image)
		wantErr string // substring of the error; empty: no error
	}{
		{
			name: "layers only",
			opts: AssembleOptions{Name: "My/Image", Tag: "v1", Arch: "x86_64", Layers: []string{l1Path, l2Path}},
			check: func(t *testing.T, img *descriptor.Image) {
				want := &descriptor.Image{
					Nixoci: descriptor.Version, Name: "my/image", Tag: "v1", Architecture: "amd64", OS: "linux",
					Created: ptr(DefaultCreated()),
					Layers:  append(append([]descriptor.Layer{}, l1.Layers...), l2.Layers...),
				}
				if diff := cmp.Diff(want, img); diff != "" {
					t.Errorf("Assemble() (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "base image and plain config",
			opts: AssembleOptions{Name: "x", FromImage: basePath, Config: plainCfg, Created: "now", Now: func() time.Time { return now }, Layers: []string{l2Path}},
			check: func(t *testing.T, img *descriptor.Image) {
				if img.Architecture != "arm64" || img.OS != "linux" {
					t.Errorf("Assemble() platform = %s/%s, want the base's linux/arm64", img.OS, img.Architecture)
				}
				wantLayers := []descriptor.Layer{base.Layers[0], l2.Layers[0]}
				if diff := cmp.Diff(wantLayers, img.Layers); diff != "" {
					t.Errorf("Assemble() layers (-want +got):\n%s", diff)
				}
				wantCfg := ocispec.ImageConfig{Env: []string{"PATH=/bin", "LANG=C.UTF-8", "X=1"}, Cmd: []string{"/bin/app"}, User: "nobody"}
				if diff := cmp.Diff(wantCfg, img.Config); diff != "" {
					t.Errorf("Assemble() config (-want +got):\n%s", diff)
				}
				if want := now.Truncate(time.Second); img.Created == nil || !img.Created.Equal(want) {
					t.Errorf("Assemble() created = %v, want %v", img.Created, want)
				}
			},
		},
		{
			name: "full image config",
			opts: AssembleOptions{Name: "x", Arch: "aarch64", OS: "linux", Config: fullCfg, Created: "2001-02-03T04:05:06+01:00", Layers: []string{l1Path}},
			check: func(t *testing.T, img *descriptor.Image) {
				if img.Author != "A. U. Thor" || len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/e" {
					t.Errorf("Assemble() author, entrypoint = %q, %q", img.Author, img.Config.Entrypoint)
				}
				if img.Architecture != "arm64" {
					t.Errorf("Assemble() architecture = %q, want arm64 (flags win over the config file)", img.Architecture)
				}
				if want := time.Date(2001, 2, 3, 3, 5, 6, 0, time.UTC); !img.Created.Equal(want) {
					t.Errorf("Assemble() created = %v, want %v", img.Created, want)
				}
			},
		},
		{
			name: "inline config and arm",
			opts: AssembleOptions{Name: "x", Arch: "armv6l", ConfigJSON: []byte(`{"WorkingDir":"/srv"}`), Layers: []string{l1Path}},
			check: func(t *testing.T, img *descriptor.Image) {
				if img.Architecture != "arm" || img.Variant != "v6" || img.Config.WorkingDir != "/srv" {
					t.Errorf("Assemble() = %s/%s workdir %q, want arm/v6 /srv", img.Architecture, img.Variant, img.Config.WorkingDir)
				}
			},
		},
		{name: "no name", opts: AssembleOptions{Layers: []string{l1Path}}, wantErr: "--name"},
		{name: "malformed config", opts: AssembleOptions{Name: "x", Config: badCfg, Layers: []string{l1Path}}, wantErr: badCfg},
		{name: "config not an object", opts: AssembleOptions{Name: "x", Config: listCfg, Layers: []string{l1Path}}, wantErr: listCfg},
		{name: "config key case", opts: AssembleOptions{Name: "x", Config: caseCfg, Layers: []string{l1Path}}, wantErr: `write it "Cmd"`},
		{name: "missing config", opts: AssembleOptions{Name: "x", Config: filepath.Join(dir, "nope.json"), Layers: []string{l1Path}}, wantErr: "nope.json"},
		{name: "bad layers version", opts: AssembleOptions{Name: "x", Layers: []string{l1Path, badLayers}}, wantErr: badLayers},
		{name: "missing base", opts: AssembleOptions{Name: "x", FromImage: filepath.Join(dir, "nobase.json")}, wantErr: "nobase.json"},
		{name: "bad created", opts: AssembleOptions{Name: "x", Created: "yesterday", Layers: []string{l1Path}}, wantErr: "yesterday"},
		{name: "bad arch", opts: AssembleOptions{Name: "x", Arch: "vax", Layers: []string{l1Path}}, wantErr: `"vax"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Assemble(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Assemble() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Assemble() error = %v", err)
			}
			tt.check(t, img)
			// The result must round-trip through the descriptor format and
			// give a manifest.
			data, err := descriptor.Marshal(img)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := descriptor.ParseImage("assembled", data); err != nil {
				t.Errorf("ParseImage(Assemble()) error = %v", err)
			}
			if _, _, err := Manifest(img, false); err != nil {
				t.Errorf("Manifest(Assemble()) error = %v", err)
			}
		})
	}
}

func TestAssembleForeignBase(t *testing.T) {
	dir := t.TempDir()
	n2c := writeJSON(t, dir, "n2c.json", `{"version":1,"image-config":{"Env":["A=1"]},"arch":"amd64","layers":[{"digest":"sha256:`+strings.Repeat("a", 64)+`","size":1,"diff_ids":"sha256:`+strings.Repeat("b", 64)+`","mediatype":"application/vnd.oci.image.layer.v1.tar+gzip","paths":[{"path":"/nix/store/x"}]}]}`)
	if _, err := Assemble(AssembleOptions{Name: "x", FromImage: n2c}); err == nil || !strings.Contains(err.Error(), n2c) {
		t.Errorf("Assemble() without Rehash error = %v, want one naming %s", err, n2c)
	}
	fixed := fakeDigest("rehashed")
	img, err := Assemble(AssembleOptions{Name: "x", FromImage: n2c, Rehash: func(i *descriptor.Image) error {
		for k := range i.Layers {
			i.Layers[k].DiffID = fixed
		}
		return nil
	}})
	if err != nil {
		t.Fatalf("Assemble() error = %v", err)
	}
	if img.Layers[0].DiffID != fixed || img.Config.Env[0] != "A=1" {
		t.Errorf("Assemble() layer diffID, env = %v, %v; want rehashed and base env", img.Layers[0].DiffID, img.Config.Env)
	}
}

func TestNormalizeArch(t *testing.T) {
	tests := []struct{ in, arch, variant string }{
		{"amd64", "amd64", ""}, {"x86_64", "amd64", ""}, {"AARCH64", "arm64", ""},
		{"i686", "386", ""}, {"armv7l", "arm", "v7"}, {"powerpc64le", "ppc64le", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, v, err := NormalizeArch(tt.in)
			if err != nil || a != tt.arch || v != tt.variant {
				t.Errorf("NormalizeArch(%q) = %q, %q, %v; want %q, %q", tt.in, a, v, err, tt.arch, tt.variant)
			}
		})
	}
	if a, _ := HostArch(); a == "" {
		t.Errorf("HostArch() = empty")
	}
}

func ptr[T any](v T) *T { return &v }
