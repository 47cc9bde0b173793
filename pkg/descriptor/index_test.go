package descriptor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sampleIndex() *Index {
	return &Index{
		Name: "hello",
		Tag:  "v1",
		Manifests: []IndexEntry{
			{Image: "/nix/store/aaaa-image-hello.json", Digest: digest.FromString("amd64"), Size: 500, Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"}},
			{Image: "arm/image.json", Digest: digest.FromString("arm"), Size: 501, Platform: ocispec.Platform{Architecture: "arm", OS: "linux", Variant: "v7"}},
		},
	}
}

func TestIndexRoundTrip(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "index.json")
	want := sampleIndex()
	if err := Write(file, want); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	if want.Nixoci != Version {
		t.Errorf("Write() set version %d, want %d", want.Nixoci, Version)
	}
	got, err := LoadIndex(file)
	if err != nil {
		t.Fatalf("LoadIndex() = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadIndex() mismatch (-want +got):\n%s", diff)
	}
	if is, err := IsIndex(file); err != nil || !is {
		t.Errorf("IsIndex(index) = %v, %v; want true", is, err)
	}
	if p := got.Manifests[0].ImagePath(file); p != "/nix/store/aaaa-image-hello.json" {
		t.Errorf("ImagePath(absolute) = %s", p)
	}
	if p := got.Manifests[1].ImagePath(file); p != filepath.Join(dir, "arm", "image.json") {
		t.Errorf("ImagePath(relative) = %s, want it under the index's directory", p)
	}
	img := filepath.Join(dir, "image.json")
	if err := Write(img, sampleImage()); err != nil {
		t.Fatal(err)
	}
	if is, err := IsIndex(img); err != nil || is {
		t.Errorf("IsIndex(image) = %v, %v; want false", is, err)
	}
}

// TestIndexKinds checks that each document kind given where another
// belongs says what it is and what to do.
func TestIndexKinds(t *testing.T) {
	dir := t.TempDir()
	index := filepath.Join(dir, "index.json")
	if err := Write(index, sampleIndex()); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, "image.json")
	if err := Write(image, sampleImage()); err != nil {
		t.Fatal(err)
	}
	layers := filepath.Join(dir, "layers.json")
	if err := Write(layers, &Layers{Layers: sampleImage().Layers}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadImage(index); err == nil || !strings.Contains(err.Error(), "is an index descriptor") || !strings.Contains(err.Error(), "nixoci copy") {
		t.Errorf("LoadImage(index) = %v, want an error saying it is an index", err)
	}
	if _, err := LoadLayers(index); err == nil || !strings.Contains(err.Error(), "is an index descriptor") {
		t.Errorf("LoadLayers(index) = %v, want an error saying it is an index", err)
	}
	if _, err := LoadIndex(image); err == nil || !strings.Contains(err.Error(), "is an image descriptor, not an index") {
		t.Errorf("LoadIndex(image) = %v, want an error saying it is an image", err)
	}
	if _, err := LoadIndex(layers); err == nil || !strings.Contains(err.Error(), "is a layers descriptor, not an index") {
		t.Errorf("LoadIndex(layers) = %v, want an error saying it is a layers document", err)
	}
}

func TestIndexErrors(t *testing.T) {
	amd := `{"image": "/a.json", "digest": "` + digest.FromString("a").String() + `", "size": 10, "platform": {"architecture": "amd64", "os": "linux"}}`
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"no version", `{"manifests": [` + amd + `]}`, "no version"},
		{"other version", `{"nixoci": 99, "manifests": [` + amd + `]}`, "version 99"},
		{"no images", `{"nixoci": 1, "manifests": []}`, "no images"},
		{"unknown field", `{"nixoci": 1, "manifests": [` + amd + `], "extra": 1}`, "unknown field"},
		{"no path", `{"nixoci": 1, "manifests": [{"digest": "` + digest.FromString("a").String() + `", "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}]}`, "no image descriptor path"},
		{"bad digest", `{"nixoci": 1, "manifests": [{"image": "/a", "digest": "sha256:12", "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}]}`, "invalid manifest digest"},
		{"no size", `{"nixoci": 1, "manifests": [{"image": "/a", "digest": "` + digest.FromString("a").String() + `", "platform": {"architecture": "amd64", "os": "linux"}}]}`, "must be positive"},
		{"no os", `{"nixoci": 1, "manifests": [{"image": "/a", "digest": "` + digest.FromString("a").String() + `", "size": 1, "platform": {"architecture": "amd64"}}]}`, "needs an architecture and an os"},
		{"same platform twice", `{"nixoci": 1, "manifests": [` + amd + `, ` + strings.Replace(amd, "/a.json", "/b.json", 1) + `]}`, "/a.json and /b.json are both for linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "index.json")
			if err := os.WriteFile(f, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadIndex(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadIndex(%s) = %v, want an error containing %q", tc.doc, err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), f) {
				t.Errorf("LoadIndex() = %v, want it to name the file", err)
			}
		})
	}
}
