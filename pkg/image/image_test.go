package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

func fakeDigest(s string) digest.Digest {
	sum := sha256.Sum256([]byte(s))
	return digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func testDescriptor(name string, alg string) descriptor.Layer {
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

// testLayer is a layer value of testDescriptor: its bytes are never read.
func testLayer(t *testing.T, d descriptor.Layer) layer.Layer {
	t.Helper()
	l, err := layer.FromDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testImage(t *testing.T) *Image {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	one := testDescriptor("one", descriptor.Gzip)
	one.History = &descriptor.History{CreatedBy: "nix", Author: "me", Comment: "first"}
	return &Image{
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
		Layers: []layer.Layer{
			testLayer(t, one),
			testLayer(t, testDescriptor("two", descriptor.Zstd)),
			testLayer(t, testDescriptor("three", descriptor.None)),
		},
	}
}

func TestConfig(t *testing.T) {
	epoch := time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)
	tests := []struct {
		name    string
		img     func() *Image
		created time.Time
	}{
		{"with created", func() *Image { return testImage(t) }, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"default created", func() *Image { i := testImage(t); i.Created = nil; return i }, epoch},
		{"no layers", func() *Image { i := testImage(t); i.Layers = nil; return i }, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
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
				want.RootFS.DiffIDs = append(want.RootFS.DiffIDs, l.DiffID())
				h := ocispec.History{Created: &tt.created}
				if hist := l.(layer.Describer).Descriptor().History; hist != nil {
					h.CreatedBy, h.Author, h.Comment = hist.CreatedBy, hist.Author, hist.Comment
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
			img := testImage(t)
			// A pulled Docker layer keeps its bytes but gets the OCI name.
			docker := testDescriptor("docker", descriptor.Gzip)
			docker.MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
			docker.Paths, docker.Blob = nil, "/nix/store/blob"
			img.Layers = append(img.Layers, testLayer(t, docker))
			served := img
			if uncompressed {
				served = Uncompressed(img)
			}

			m, config, err := Manifest(served)
			if err != nil {
				t.Fatalf("Manifest() error = %v", err)
			}
			cfg, _ := Config(img)
			if string(cfg) != string(config) {
				t.Errorf("Manifest() config differs from Config() of the image as described: the config must not depend on how layers are served")
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
				d := l.(layer.Describer).Descriptor()
				od := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
				if d.Blob != "" {
					od.MediaType = ocispec.MediaTypeImageLayerGzip
				}
				if uncompressed {
					od = ocispec.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: d.DiffID, Size: d.UncompressedSize}
				}
				want = append(want, od)
			}
			if diff := cmp.Diff(want, got.Layers); diff != "" {
				t.Errorf("Manifest() layers (-want +got):\n%s", diff)
			}
			if got.Annotations != nil {
				t.Errorf("Manifest() annotations = %v, want none", got.Annotations)
			}
		})
	}
}

func TestManifestErrors(t *testing.T) {
	img := testImage(t)
	img.Architecture = ""
	if _, _, err := Manifest(img); err == nil || !strings.Contains(err.Error(), "architecture") {
		t.Errorf("Manifest(no architecture) error = %v, want one about the architecture", err)
	}
	if _, _, err := Manifest(nil); err == nil {
		t.Error("Manifest(nil) error = nil")
	}
}

func TestDescriptorRoundTrip(t *testing.T) {
	img := testImage(t)
	file := filepath.Join(t.TempDir(), "image.json")
	if err := Write(file, img); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	back, err := Load(context.Background(), file)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	m1, _, err := Manifest(img)
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := Manifest(back)
	if err != nil {
		t.Fatal(err)
	}
	if string(m1) != string(m2) {
		t.Errorf("Load(Write()) gives manifest %s, want %s", m2, m1)
	}
	if err := Write(file, Uncompressed(img)); err == nil || !strings.Contains(err.Error(), "cannot be written") {
		t.Errorf("Write(Uncompressed()) error = %v, want one saying a view cannot be written", err)
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

func TestAssemble(t *testing.T) {
	base := &Image{
		Name:         "base",
		Architecture: "arm64",
		OS:           "linux",
		Config:       ocispec.ImageConfig{Env: []string{"PATH=/bin", "LANG=C"}, Cmd: []string{"sh"}, User: "nobody"},
		Author:       "base author",
		Layers:       []layer.Layer{testLayer(t, testDescriptor("base", descriptor.Gzip))},
	}
	a, b := testLayer(t, testDescriptor("a", descriptor.Gzip)), testLayer(t, testDescriptor("b", descriptor.Zstd))
	parse := func(s string) *ParsedConfig {
		c, err := ParseConfig("test config", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)

	tests := []struct {
		name    string
		opts    AssembleOptions
		check   func(t *testing.T, img *Image)
		wantErr string // substring of the error; empty: no error
	}{
		{
			name: "layers only",
			opts: AssembleOptions{Name: "My/Image", Tag: "v1", Arch: "x86_64", Layers: []layer.Layer{a, b}},
			check: func(t *testing.T, img *Image) {
				if img.Name != "my/image" || img.Tag != "v1" || img.Architecture != "amd64" || img.OS != "linux" || !img.Created.Equal(DefaultCreated()) {
					t.Errorf("Assemble() = %s:%s %s/%s %v, want my/image:v1 linux/amd64 %v", img.Name, img.Tag, img.OS, img.Architecture, img.Created, DefaultCreated())
				}
				if len(img.Layers) != 2 || img.Layers[0] != a || img.Layers[1] != b {
					t.Errorf("Assemble() layers = %v, want a, b", img.Layers)
				}
			},
		},
		{
			name: "base image and plain config",
			opts: AssembleOptions{Name: "x", Base: base, Config: parse(`{"Env":["LANG=C.UTF-8","X=1"],"Cmd":["/bin/app"],"Healthcheck":{"Test":["NONE"]}}`), Created: "now", Now: func() time.Time { return now }, Layers: []layer.Layer{b}},
			check: func(t *testing.T, img *Image) {
				if img.Architecture != "arm64" || img.OS != "linux" {
					t.Errorf("Assemble() platform = %s/%s, want the base's linux/arm64", img.OS, img.Architecture)
				}
				if len(img.Layers) != 2 || img.Layers[0] != base.Layers[0] || img.Layers[1] != b {
					t.Errorf("Assemble() layers = %v, want the base's then b", img.Layers)
				}
				wantCfg := ocispec.ImageConfig{Env: []string{"PATH=/bin", "LANG=C.UTF-8", "X=1"}, Cmd: []string{"/bin/app"}, User: "nobody"}
				if diff := cmp.Diff(wantCfg, img.Config); diff != "" {
					t.Errorf("Assemble() config (-want +got):\n%s", diff)
				}
				if img.Author != "" {
					t.Errorf("Assemble() author = %q, want none: a plain config has none, and the base's is not inherited", img.Author)
				}
				if want := now.Truncate(time.Second); img.Created == nil || !img.Created.Equal(want) {
					t.Errorf("Assemble() created = %v, want %v", img.Created, want)
				}
			},
		},
		{
			name: "full image config",
			opts: AssembleOptions{Name: "x", Arch: "aarch64", OS: "linux", Config: parse(`{"architecture":"s390x","author":"A. U. Thor","config":{"Entrypoint":["/e"]},"rootfs":{"type":"layers","diff_ids":[]}}`), Created: "2001-02-03T04:05:06+01:00", Layers: []layer.Layer{a}},
			check: func(t *testing.T, img *Image) {
				if img.Author != "A. U. Thor" || len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/e" {
					t.Errorf("Assemble() author, entrypoint = %q, %q", img.Author, img.Config.Entrypoint)
				}
				if img.Architecture != "arm64" {
					t.Errorf("Assemble() architecture = %q, want arm64 (the option wins over the config file)", img.Architecture)
				}
				if want := time.Date(2001, 2, 3, 3, 5, 6, 0, time.UTC); !img.Created.Equal(want) {
					t.Errorf("Assemble() created = %v, want %v", img.Created, want)
				}
			},
		},
		{
			name: "arm variant",
			opts: AssembleOptions{Name: "x", Arch: "armv6l", Config: parse(`{"WorkingDir":"/srv"}`), Layers: []layer.Layer{a}},
			check: func(t *testing.T, img *Image) {
				if img.Architecture != "arm" || img.Variant != "v6" || img.Config.WorkingDir != "/srv" {
					t.Errorf("Assemble() = %s/%s workdir %q, want arm/v6 /srv", img.Architecture, img.Variant, img.Config.WorkingDir)
				}
			},
		},
		{name: "no name", opts: AssembleOptions{Layers: []layer.Layer{a}}, wantErr: "no name"},
		{name: "bad created", opts: AssembleOptions{Name: "x", Created: "yesterday", Layers: []layer.Layer{a}}, wantErr: "yesterday"},
		{name: "bad arch", opts: AssembleOptions{Name: "x", Arch: "vax", Layers: []layer.Layer{a}}, wantErr: `"vax"`},
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
			d, err := img.Descriptor()
			if err != nil {
				t.Fatal(err)
			}
			data, err := descriptor.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := descriptor.ParseImage("assembled", data); err != nil {
				t.Errorf("ParseImage(Assemble()) error = %v", err)
			}
			if _, _, err := Manifest(img); err != nil {
				t.Errorf("Manifest(Assemble()) error = %v", err)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	got, err := ParseConfig("plain", []byte(`{"Env":["A=1"],"Healthcheck":{"Test":["NONE"]},"Shell":["sh"]}`))
	if err != nil {
		t.Fatalf("ParseConfig() = %v", err)
	}
	if diff := cmp.Diff([]string{"Healthcheck", "Shell"}, got.Ignored); diff != "" {
		t.Errorf("ParseConfig().Ignored (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"malformed", `{"Cmd":`, "expected a JSON object"},
		{"not an object", `["Cmd"]`, "expected a JSON object"},
		{"key case", `{"cmd":["x"]}`, `write it "Cmd"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseConfig(tc.name, []byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("ParseConfig(%s) error = %v, want one naming it", tc.data, err)
			}
		})
	}
}

// TestLoadForeign checks that a nix2container image.json is described anew
// when it is loaded: its store path layer gets this nixoci's digests.
func TestLoadForeign(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "nix", "store", "aaaa-x")
	if err := os.MkdirAll(filepath.Join(store, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, "bin", "x"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	n2c := filepath.Join(dir, "n2c.json")
	doc := `{"version":1,"image-config":{"Env":["A=1"]},"arch":"amd64","layers":[{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":1,"diff_ids":"sha256:` + strings.Repeat("b", 64) + `","mediatype":"application/vnd.oci.image.layer.v1.tar+gzip","paths":[{"path":"` + store + `"}]}]}`
	if err := os.WriteFile(n2c, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Load(context.Background(), n2c)
	if err != nil {
		t.Fatalf("Load(nix2container) = %v", err)
	}
	want, err := layer.Describe(context.Background(), layer.Spec{Paths: []descriptor.Path{{Path: store}}, Compression: descriptor.Gzip})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 || img.Layers[0].DiffID() != want.DiffID() || img.Layers[0].Digest() != want.Digest() {
		t.Errorf("Load(nix2container) layer = %v, want this nixoci's digests %s/%s", img.Layers, want.Digest(), want.DiffID())
	}
	if img.Config.Env[0] != "A=1" || img.Architecture != "amd64" {
		t.Errorf("Load(nix2container) config, arch = %v, %s", img.Config, img.Architecture)
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
