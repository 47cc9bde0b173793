package image

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// writePlatformImage writes testImage for arch (variant) to dir/NAME.json.
func writePlatformImage(t *testing.T, dir, name, arch, variant string) IndexImage {
	t.Helper()
	img := testImage(t)
	img.Architecture, img.Variant = arch, variant
	p := filepath.Join(dir, name+".json")
	if err := Write(p, img); err != nil {
		t.Fatal(err)
	}
	return IndexImage{Path: p, Image: img}
}

func TestIndexRoundTrip(t *testing.T) {
	dir := t.TempDir()
	amd := writePlatformImage(t, dir, "amd64", "amd64", "")
	arm := writePlatformImage(t, dir, "arm", "arm", "v7")
	idx, err := AssembleIndex("Hello", "v1", []IndexImage{amd, arm})
	if err != nil {
		t.Fatalf("AssembleIndex() = %v", err)
	}
	if idx.Name != "hello" {
		t.Errorf("AssembleIndex() name = %q, want it lower-cased", idx.Name)
	}
	file := filepath.Join(dir, "index.json")
	if err := WriteIndex(file, idx); err != nil {
		t.Fatalf("WriteIndex() = %v", err)
	}
	d, err := descriptor.LoadIndex(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range d.Manifests {
		m, _, err := Manifest(idx.Images[i].Image)
		if err != nil {
			t.Fatal(err)
		}
		want := descriptor.IndexEntry{Image: idx.Images[i].Path, Digest: digest.FromBytes(m), Size: int64(len(m)), Platform: Platform(idx.Images[i].Image)}
		if diff := cmp.Diff(want, e); diff != "" {
			t.Errorf("index entry %d (-want +got):\n%s", i, diff)
		}
	}
	back, err := LoadIndex(context.Background(), file)
	if err != nil {
		t.Fatalf("LoadIndex() = %v", err)
	}
	if back.Name != "hello" || back.Tag != "v1" || len(back.Images) != 2 || back.Images[1].Image.Variant != "v7" {
		t.Errorf("LoadIndex() = %+v", back)
	}
}

func TestIndexErrors(t *testing.T) {
	dir := t.TempDir()
	amd := writePlatformImage(t, dir, "amd64", "amd64", "")
	again := writePlatformImage(t, dir, "again", "amd64", "")
	if _, err := AssembleIndex("x", "", []IndexImage{amd, again}); err == nil || !strings.Contains(err.Error(), "both for linux/amd64") {
		t.Errorf("AssembleIndex(same platform twice) = %v, want an error naming the platform", err)
	}
	if _, err := AssembleIndex("x", "", nil); err == nil || !strings.Contains(err.Error(), "no images") {
		t.Errorf("AssembleIndex(no images) = %v", err)
	}
	if _, err := AssembleIndex(" ", "", []IndexImage{amd}); err == nil || !strings.Contains(err.Error(), "no name") {
		t.Errorf("AssembleIndex(no name) = %v", err)
	}

	// An image rewritten after the index was written.
	idx, err := AssembleIndex("x", "", []IndexImage{amd})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "index.json")
	if err := WriteIndex(file, idx); err != nil {
		t.Fatal(err)
	}
	changed := testImage(t)
	changed.Architecture, changed.Config.Cmd = "amd64", []string{"/other"}
	if err := Write(amd.Path, changed); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIndex(context.Background(), file); !errors.Is(err, ErrIndexOutdated) || !strings.Contains(err.Error(), amd.Path) {
		t.Errorf("LoadIndex(changed image) = %v, want ErrIndexOutdated naming %s", err, amd.Path)
	}
	changed.Config.Cmd, changed.Architecture = testImage(t).Config.Cmd, "arm64"
	if err := Write(amd.Path, changed); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIndex(context.Background(), file); !errors.Is(err, ErrIndexOutdated) || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("LoadIndex(image of another platform) = %v, want ErrIndexOutdated naming the platform", err)
	}
	if err := os.Remove(amd.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIndex(context.Background(), file); err == nil || !strings.Contains(err.Error(), amd.Path) {
		t.Errorf("LoadIndex(missing image) = %v, want an error naming it", err)
	}
}

func TestIndexManifest(t *testing.T) {
	entries := []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("a"), Size: 10, Platform: &ocispec.Platform{Architecture: "amd64", OS: "linux"}},
		{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("b"), Size: 11, Platform: &ocispec.Platform{Architecture: "arm64", OS: "linux", Variant: "v8"}},
	}
	a, err := IndexManifest(entries)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := IndexManifest(entries)
	if string(a) != string(b) {
		t.Errorf("IndexManifest() is not deterministic")
	}
	var got ocispec.Index
	if err := json.Unmarshal(a, &got); err != nil {
		t.Fatal(err)
	}
	if got.SchemaVersion != 2 || got.MediaType != ocispec.MediaTypeImageIndex || got.Annotations != nil {
		t.Errorf("IndexManifest() header = %d %q %v", got.SchemaVersion, got.MediaType, got.Annotations)
	}
	if diff := cmp.Diff(entries, got.Manifests); diff != "" {
		t.Errorf("IndexManifest() entries (-want +got):\n%s", diff)
	}
	if _, err := IndexManifest(nil); err == nil {
		t.Error("IndexManifest(nil) = nil error")
	}
}
