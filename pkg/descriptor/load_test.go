package descriptor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sampleImage() *Image {
	created := time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)
	uid := 1000
	d := digest.FromString("layer")
	return &Image{
		Name:         "hello",
		Tag:          "v1",
		Architecture: "amd64",
		OS:           "linux",
		Created:      &created,
		Config:       ocispec.ImageConfig{Cmd: []string{"/bin/hello"}, Labels: map[string]string{"b": "2", "a": "1"}},
		Layers: []Layer{{
			MediaType:        MediaType(Gzip),
			Digest:           d,
			Size:             10,
			DiffID:           digest.FromString("tar"),
			UncompressedSize: 20,
			Compressor:       Compressor{Algorithm: Gzip, Level: 5, Library: "github.com/klauspost/compress@v1.0.0"},
			Paths: []Path{{
				Path:    "/nix/store/aaaa-hello",
				Rewrite: &Rewrite{Regex: "^/nix/store/aaaa-hello", Repl: ""},
				Perms:   []Perm{{Regex: ".*/data", Mode: "0700", UID: &uid}},
			}},
			History: &History{CreatedBy: "nixoci"},
		}},
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "image.json")
	want := sampleImage()
	if err := Write(file, want); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	for _, path := range []string{file, dir} { // a directory resolves to its image.json
		got, err := LoadImage(path)
		if err != nil {
			t.Fatalf("LoadImage(%s) = %v", path, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("LoadImage(%s) mismatch (-want +got):\n%s", path, diff)
		}
	}
	first, _ := os.ReadFile(file)
	second, err := Marshal(sampleImage())
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Errorf("Marshal() is not deterministic:\n%s\n---\n%s", first, second)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("Write() left temporary files: %v", left)
	}
}

// TestLoadLayersOfImage checks that an image descriptor given where a
// layers document belongs says so.
func TestLoadLayersOfImage(t *testing.T) {
	f := filepath.Join(t.TempDir(), "image.json")
	if err := os.WriteFile(f, []byte(`{"nixoci": 1, "architecture": "amd64", "os": "linux", "config": {}, "layers": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadLayers(f); err == nil || !strings.Contains(err.Error(), "is an image descriptor") || !strings.Contains(err.Error(), f) {
		t.Errorf("LoadLayers(image descriptor) = %v, want an error naming it as an image descriptor", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
		is        error
	}{
		{"garbage", `{"nixoci": 1,`, []string{"bad.json", "parsing"}, nil},
		{"future version", `{"nixoci": 7, "layers": []}`, []string{"bad.json", "version 7", "version 1"}, ErrUnknownVersion},
		{"nix2container version 2", `{"version": 2, "image-config": {}, "layers": []}`, []string{"bad.json", "version 2", "nix2container version 1"}, ErrUnknownVersion},
		{"no version", `{"layers": []}`, []string{"bad.json", "no version"}, ErrUnknownVersion},
		{"unknown field", `{"nixoci": 1, "architecture": "amd64", "os": "linux", "layer": []}`, []string{"bad.json", "layer"}, nil},
		{"no platform", `{"nixoci": 1, "os": "linux", "layers": []}`, []string{"bad.json", "architecture"}, nil},
		{"layers document", `{"nixoci": 1, "layers": []}`, []string{"bad.json", "is a layers descriptor", "nixoci image"}, nil},
		{"bad digest", `{"nixoci": 1, "architecture": "amd64", "os": "linux", "layers": [{"mediaType": "x", "digest": "sha256:nothex", "diffID": "sha256:nothex", "compressor": {"algorithm": "none"}}]}`, []string{"bad.json", "layer 0", "digest"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseImage("bad.json", []byte(tc.doc))
			if err == nil {
				t.Fatalf("ParseImage() = nil error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseImage() = %q, want it to mention %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("ParseImage() = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestParseNix2Container(t *testing.T) {
	tarDigest := digest.FromString("tar")
	gzDigest := digest.FromString("gz")
	doc := `{
  "version": 1,
  "image-config": {"Entrypoint": ["/bin/sh"]},
  "arch": "arm64",
  "created": "2024-01-02T03:04:05Z",
  "layers": [
    {"digest": "` + string(tarDigest) + `", "size": 3072, "diff_ids": "` + string(tarDigest) + `",
     "mediatype": "application/vnd.oci.image.layer.v1.tar",
     "paths": [{"path": "/nix/store/bbbb-root", "options": {"rewrite": {"regex": "^/nix/store/bbbb-root", "repl": ""},
                "perms": [{"regex": ".*", "mode": "0755", "uid": 1, "gid": 2, "uname": "u", "gname": "g"}]}}],
     "History": {"created_by": "nix2container"}},
    {"digest": "` + string(gzDigest) + `", "size": 99, "diff_ids": "` + string(tarDigest) + `",
     "mediatype": "application/vnd.oci.image.layer.v1.tar+gzip", "layer-path": "/nix/store/cccc-blob"}
  ]
}`
	img, err := ParseImage("image.json", []byte(doc))
	if err != nil {
		t.Fatalf("ParseImage() = %v", err)
	}
	for i, l := range img.Layers {
		if l.Compressor.Library != Nix2ContainerLibrary {
			t.Errorf("ParseImage() layer %d compressor library = %q, want %q for nix2container input", i, l.Compressor.Library, Nix2ContainerLibrary)
		}
	}
	if img.Architecture != "arm64" || img.OS != "linux" || img.Created == nil || img.Created.Year() != 2024 {
		t.Errorf("ParseImage() platform/created = %s/%s %v", img.OS, img.Architecture, img.Created)
	}
	if got := img.Config.Entrypoint; len(got) != 1 || got[0] != "/bin/sh" {
		t.Errorf("ParseImage().Config.Entrypoint = %v", got)
	}
	if len(img.Layers) != 2 {
		t.Fatalf("ParseImage() has %d layers, want 2", len(img.Layers))
	}
	l0, l1 := img.Layers[0], img.Layers[1]
	if l0.Compressor.Algorithm != None || len(l0.Paths) != 1 || l0.Paths[0].Rewrite == nil || l0.Paths[0].Rewrite.Regex != "^/nix/store/bbbb-root" {
		t.Errorf("layer 0 = %+v", l0)
	}
	if p := l0.Paths[0].Perms; len(p) != 1 || p[0].Mode != "0755" || *p[0].UID != 1 || *p[0].Gname != "g" {
		t.Errorf("layer 0 perms = %+v", p)
	}
	if l0.History == nil || l0.History.CreatedBy != "nix2container" {
		t.Errorf("layer 0 history = %+v", l0.History)
	}
	if l1.Blob != "/nix/store/cccc-blob" || l1.Tar != "" || l1.Compressor.Algorithm != Gzip {
		t.Errorf("layer 1 = %+v, want a gzip blob layer", l1)
	}
}

func TestLoadLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "layers.json")
	want := &Layers{Layers: sampleImage().Layers}
	if err := Write(file, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadLayers(file)
	if err != nil {
		t.Fatalf("LoadLayers() = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadLayers() mismatch (-want +got):\n%s", diff)
	}
	if _, err := LoadLayers(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("LoadLayers(missing) = %v, want an error naming the file", err)
	}
}

func TestMediaTypes(t *testing.T) {
	for _, alg := range []string{Gzip, Zstd, None} {
		if got := AlgorithmOf(MediaType(alg)); got != alg {
			t.Errorf("AlgorithmOf(MediaType(%q)) = %q", alg, got)
		}
	}
	if got := AlgorithmOf("application/vnd.docker.image.rootfs.diff.tar.gzip"); got != Gzip {
		t.Errorf("AlgorithmOf(docker gzip) = %q, want gzip", got)
	}
}
