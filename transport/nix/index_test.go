package nix

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
)

// writeIndex writes an image per architecture (each with its own layer
// and a shared one) and an index of them; it returns the index file.
func writeIndex(t *testing.T, archs ...string) string {
	t.Helper()
	dir := t.TempDir()
	shared := tree(t, map[string]string{"etc/shared": "shared\n"})
	var images []image.IndexImage
	for _, arch := range archs {
		imgDir := filepath.Join(dir, arch)
		own := tree(t, map[string]string{"bin/app": "app for " + arch + "\n"})
		if err := mkdir(imgDir); err != nil {
			t.Fatal(err)
		}
		d := writeImage(t, imgDir, descriptor.Gzip, shared, own)
		d.Architecture = arch
		p := filepath.Join(imgDir, descriptor.ImageFileName)
		if err := descriptor.Write(p, d); err != nil {
			t.Fatal(err)
		}
		img, err := image.Load(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, image.IndexImage{Path: p, Image: img})
	}
	idx, err := image.AssembleIndex("multi", "v1", images)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "index.json")
	if err := image.WriteIndex(file, idx); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestIndexSource(t *testing.T) {
	file := writeIndex(t, "amd64", "arm64")
	for _, uncompressed := range []bool{false, true} {
		t.Run(map[bool]string{false: "as described", true: "uncompressed"}[uncompressed], func(t *testing.T) {
			ref := file
			if uncompressed {
				ref += ":uncompressed"
			}
			src := openSource(t, ref)
			data, mt, err := src.GetManifest(context.Background(), nil)
			if err != nil {
				t.Fatalf("GetManifest() = %v", err)
			}
			if mt != ocispec.MediaTypeImageIndex {
				t.Errorf("GetManifest() type = %q, want an OCI index", mt)
			}
			var idx ocispec.Index
			if err := json.Unmarshal(data, &idx); err != nil {
				t.Fatal(err)
			}
			if len(idx.Manifests) != 2 {
				t.Fatalf("index lists %d manifests, want 2", len(idx.Manifests))
			}
			d, err := descriptor.LoadIndex(file)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range idx.Manifests {
				if e.Platform == nil || e.Platform.Architecture != d.Manifests[i].Platform.Architecture || e.Platform.OS != "linux" {
					t.Errorf("entry %d platform = %+v, want %+v", i, e.Platform, d.Manifests[i].Platform)
				}
				// As described, the served manifests are the ones the
				// index document records.
				if !uncompressed && (e.Digest != d.Manifests[i].Digest || e.Size != d.Manifests[i].Size) {
					t.Errorf("entry %d = %s/%d, the index document says %s/%d", i, e.Digest, e.Size, d.Manifests[i].Digest, d.Manifests[i].Size)
				}
				m, mt, err := src.GetManifest(context.Background(), &e.Digest)
				if err != nil {
					t.Fatalf("GetManifest(%s) = %v", e.Digest, err)
				}
				if mt != ocispec.MediaTypeImageManifest || digest.FromBytes(m) != e.Digest || int64(len(m)) != e.Size {
					t.Errorf("GetManifest(%s) = %s %s (%d bytes), want the entry's manifest", e.Digest, mt, digest.FromBytes(m), len(m))
				}
				var man ocispec.Manifest
				if err := json.Unmarshal(m, &man); err != nil {
					t.Fatal(err)
				}
				var config ocispec.Image
				if err := json.Unmarshal(readBlob(t, src, man.Config), &config); err != nil {
					t.Fatal(err)
				}
				if config.Architecture != e.Platform.Architecture {
					t.Errorf("image %d config architecture = %s, want %s", i, config.Architecture, e.Platform.Architecture)
				}
				for _, l := range man.Layers {
					readBlob(t, src, l)
					if uncompressed != (l.MediaType == ocispec.MediaTypeImageLayer) {
						t.Errorf("image %d layer media type %s, uncompressed=%v", i, l.MediaType, uncompressed)
					}
				}
			}
			other := digest.FromString("other")
			if _, _, err := src.GetManifest(context.Background(), &other); !errors.Is(err, ErrUnknownManifest) {
				t.Errorf("GetManifest(unknown) = %v, want ErrUnknownManifest", err)
			}
		})
	}
}

// TestIndexNewImage: an image opened from an index is the instance of the
// platform asked for, as containers/image chooses for docker-daemon: and
// containers-storage:.
func TestIndexNewImage(t *testing.T) {
	file := writeIndex(t, "amd64", "arm64", "s390x")
	ref, err := ParseReference(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"arm64", "s390x"} {
		img, err := ref.NewImage(context.Background(), &types.SystemContext{ArchitectureChoice: arch, OSChoice: "linux"})
		if err != nil {
			t.Fatalf("NewImage(%s) = %v", arch, err)
		}
		config, err := img.OCIConfig(context.Background())
		img.Close()
		if err != nil {
			t.Fatal(err)
		}
		if config.Architecture != arch {
			t.Errorf("NewImage(%s) gives an image for %s", arch, config.Architecture)
		}
	}
	if _, err := ref.NewImage(context.Background(), &types.SystemContext{ArchitectureChoice: "riscv64", OSChoice: "linux"}); err == nil {
		t.Errorf("NewImage(riscv64) of an index without it = nil error")
	}
}

func TestIndexSourceOutdated(t *testing.T) {
	file := writeIndex(t, "amd64")
	d, err := descriptor.LoadIndex(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := descriptor.LoadImage(d.Manifests[0].Image)
	if err != nil {
		t.Fatal(err)
	}
	img.Config.Cmd = []string{"/changed"}
	if err := descriptor.Write(d.Manifests[0].Image, img); err != nil {
		t.Fatal(err)
	}
	ref, err := NewReference(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.NewImageSource(context.Background(), nil); !errors.Is(err, image.ErrIndexOutdated) {
		t.Errorf("NewImageSource(index of a changed image) = %v, want ErrIndexOutdated", err)
	}
}
