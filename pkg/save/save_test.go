package save_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/archive"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/save"
)

func ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// storeLayer describes a layer of one store path holding one file.
func storeLayer(t *testing.T, name, content string) layer.Layer {
	t.Helper()
	p := filepath.Join(t.TempDir(), "0000000000000000000000000000000a-"+name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "file"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := layer.Describe(ctx(t), layer.Spec{Paths: []descriptor.Path{{Path: p}}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestWriteReadBack(t *testing.T) {
	shared := storeLayer(t, "shared", "shared")
	imgs := []save.Image{
		{Image: &image.Image{Name: "a", Architecture: "amd64", OS: "linux", Config: ocispec.ImageConfig{Cmd: []string{"/a"}}, Layers: []layer.Layer{shared, storeLayer(t, "a", "a")}}, RepoTags: []string{"a:v1"}},
		{Image: &image.Image{Name: "b", Architecture: "amd64", OS: "linux", Config: ocispec.ImageConfig{Cmd: []string{"/b"}}, Layers: []layer.Layer{shared}}, RepoTags: []string{"b:v1", "b:latest"}},
	}
	for _, alg := range []string{"", descriptor.Gzip, descriptor.Zstd} {
		t.Run(alg, func(t *testing.T) {
			var buf bytes.Buffer
			if err := save.Write(ctx(t), &buf, imgs, save.Options{Compression: alg}); err != nil {
				t.Fatalf("Write() = %v", err)
			}
			var again bytes.Buffer
			if err := save.Write(ctx(t), &again, imgs, save.Options{Compression: alg}); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Errorf("a second Write() gives other bytes (%v)", err)
			}
			if n := layerFiles(t, alg, buf.Bytes()); n != 2 {
				t.Errorf("the archive holds %d layer files, want 2 (the shared one once)", n)
			}
			file := filepath.Join(t.TempDir(), "saved.tar")
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			read, err := save.Read(ctx(t), file, nil)
			if err != nil {
				t.Fatalf("Read() = %v", err)
			}
			if len(read) != 2 {
				t.Fatalf("Read() = %d images, want 2", len(read))
			}
			for i, want := range imgs {
				got := read[i]
				if strings.Join(got.RepoTags, ",") != strings.Join(want.RepoTags, ",") {
					t.Errorf("image %d tags %v, want %v", i, got.RepoTags, want.RepoTags)
				}
				wc, _ := image.Config(want.Image)
				gc, _ := image.Config(got.Image)
				if !bytes.Equal(wc, gc) {
					t.Errorf("image %d config read back differs:\n%s\nwant\n%s", i, gc, wc)
				}
			}
			if _, err := save.Read(ctx(t), file, []string{"x:y"}); err == nil || !strings.Contains(err.Error(), "2 images") {
				t.Errorf("Read() of a 2-image archive with a name = %v, want an error", err)
			}
		})
	}
}

// layerFiles counts the layer.tar files in an archive.
func layerFiles(t *testing.T, alg string, data []byte) int {
	t.Helper()
	if alg == "" {
		alg = descriptor.None
	}
	zr, err := compress.NewReader(alg, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, "/layer.tar") {
			n++
		}
	}
}

// TestSaveArchiveOfArchive saves an image whose layers are served from
// another archive, as mergeImages of dockerTools tarballs does.
func TestSaveArchiveOfArchive(t *testing.T) {
	img := &image.Image{Name: "c", Architecture: "amd64", OS: "linux", Layers: []layer.Layer{storeLayer(t, "c", "c")}}
	var buf bytes.Buffer
	if err := save.Write(ctx(t), &buf, []save.Image{{Image: img, RepoTags: []string{"c:1"}}}, save.Options{Compression: descriptor.Gzip}); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(t.TempDir(), "first.tar.gz")
	os.WriteFile(first, buf.Bytes(), 0o644)
	read, err := save.Read(ctx(t), first, []string{"renamed:2"})
	if err != nil {
		t.Fatal(err)
	}
	var second bytes.Buffer
	if err := save.Write(ctx(t), &second, read, save.Options{}); err != nil {
		t.Fatalf("Write() of an archive's image = %v", err)
	}
	file := filepath.Join(t.TempDir(), "second.tar")
	os.WriteFile(file, second.Bytes(), 0o644)
	a, err := archive.Open(ctx(t), file)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(a.Images[0].RepoTags); got != "[renamed:2]" {
		t.Errorf("RepoTags = %s, want [renamed:2]", got)
	}
}
