package nix

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// tree writes files (name → content) under a new directory that stands in
// for a store path, and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "abc-tree")
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// writeImage describes one layer per store path with the given compression
// and writes the image descriptor to dir/image.json.
func writeImage(t *testing.T, dir, compression string, paths ...string) *descriptor.Image {
	t.Helper()
	img := &descriptor.Image{Architecture: "amd64", OS: "linux"}
	for _, p := range paths {
		l, err := layer.Describe(context.Background(), layer.Spec{Paths: []descriptor.Path{{Path: p}}, Compression: compression})
		if err != nil {
			t.Fatalf("layer.Describe(%s) = %v", p, err)
		}
		img.Layers = append(img.Layers, l.(layer.Describer).Descriptor())
	}
	if err := descriptor.Write(filepath.Join(dir, descriptor.ImageFileName), img); err != nil {
		t.Fatal(err)
	}
	return img
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
