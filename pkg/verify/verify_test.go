package verify_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/tarstream"
	"github.com/nixoci/nixoci/pkg/verify"
)

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fixture is an image of three layers: two store paths (gzip), a stored
// tar (zstd) and a blob.
type fixture struct {
	store      string
	foo, bar   string
	tarFile    string
	blobFile   string
	img        *descriptor.Image
	fooBinName string
}

func mkFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: filepath.Join(t.TempDir(), "store")}
	f.foo = filepath.Join(f.store, "aaa-foo")
	f.bar = filepath.Join(f.store, "bbb-bar")
	mkFile(t, filepath.Join(f.foo, "bin", "a"), "first", 0o755)
	mkFile(t, filepath.Join(f.foo, "bin", "x"), "the x tool", 0o755)
	mkFile(t, filepath.Join(f.foo, "share", "y"), "y", 0o644)
	mkFile(t, filepath.Join(f.bar, "lib", "z"), strings.Repeat("z", 3000), 0o644)
	f.fooBinName = strings.TrimPrefix(filepath.Join(f.foo, "bin", "x"), "/")
	other := filepath.Join(f.store, "ccc-other")
	mkFile(t, filepath.Join(other, "etc", "o"), "o", 0o644)

	dir := t.TempDir()
	f.tarFile = filepath.Join(dir, "layer.tar")
	specs := []layer.Spec{
		{Paths: []descriptor.Path{{Path: f.foo}, {Path: f.bar}}, Compression: descriptor.Gzip},
		{Paths: []descriptor.Path{{Path: other}}, Compression: descriptor.Zstd, TarFile: f.tarFile},
	}
	values, err := layer.DescribeAll(ctx(t), specs)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := layer.Descriptors(values)
	if err != nil {
		t.Fatal(err)
	}
	// A blob layer: the first layer's gzip bytes stored as a file.
	r, err := values[0].Compressed(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	f.blobFile = filepath.Join(dir, "blob")
	mkFile(t, f.blobFile, string(data), 0o644)
	blob := layers[0]
	blob.Paths, blob.Blob = nil, f.blobFile
	f.img = &descriptor.Image{Architecture: "amd64", OS: "linux", Layers: append(layers, blob)}
	return f
}

// verifyImage verifies the fixture's image as its descriptor now says.
func verifyImage(t *testing.T, f *fixture) (*verify.Report, error) {
	t.Helper()
	img, err := image.FromDescriptor(ctx(t), f.img)
	if err != nil {
		t.Fatal(err)
	}
	return verify.Image(ctx(t), img)
}

func TestHappyPath(t *testing.T) {
	f := newFixture(t)
	rep, err := verifyImage(t, f)
	if err != nil {
		t.Fatalf("Image() = %v, want no error", err)
	}
	if len(rep.Layers) != 3 {
		t.Fatalf("report has %d layers, want 3", len(rep.Layers))
	}
	for i, lr := range rep.Layers {
		if lr.Index != i || lr.Digest != f.img.Layers[i].Digest || !lr.CompressedChecked || lr.Note != "" {
			t.Errorf("layer report %d = %+v, want its digest fully checked", i, lr)
		}
	}
}

func mismatch(t *testing.T, err error) *verify.MismatchError {
	t.Helper()
	var m *verify.MismatchError
	if !errors.As(err, &m) || !errors.Is(err, verify.ErrMismatch) {
		t.Fatalf("Image() = %v, want a *MismatchError", err)
	}
	return m
}

func TestNamesChangedFile(t *testing.T) {
	x := func(f *fixture) string { return filepath.Join(f.foo, "bin", "x") }
	tests := []struct {
		name   string
		change func(t *testing.T, f *fixture)
		file   func(f *fixture) string // tar name expected in MismatchError.File
		says   string
	}{
		{"content", func(t *testing.T, f *fixture) { mkFile(t, x(f), "the X tool", 0o755) }, func(f *fixture) string { return f.fooBinName }, "differs from what was described"},
		{"mode", func(t *testing.T, f *fixture) { os.Chmod(x(f), 0o644) }, func(f *fixture) string { return f.fooBinName }, "content, mode or type"},
		{"type", func(t *testing.T, f *fixture) {
			os.Remove(x(f))
			os.Symlink("a", x(f))
		}, func(f *fixture) string { return f.fooBinName }, "differs"},
		{"added", func(t *testing.T, f *fixture) { mkFile(t, filepath.Join(f.foo, "zzz"), "new", 0o644) }, func(f *fixture) string { return strings.TrimPrefix(f.foo, "/") + "/zzz" }, "was not there"},
		{"removed", func(t *testing.T, f *fixture) { os.Remove(filepath.Join(f.foo, "share", "y")) }, func(f *fixture) string { return strings.TrimPrefix(f.foo, "/") + "/share/" }, "removed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.change(t, f)
			_, err := verifyImage(t, f)
			m := mismatch(t, err)
			if m.Index != 0 || m.Digest != f.img.Layers[0].Digest || m.Path != f.foo || m.File != tc.file(f) {
				t.Errorf("mismatch layer %d %s path %q file %q; want layer 0 %s path %q file %q", m.Index, m.Digest, m.Path, m.File, f.img.Layers[0].Digest, f.foo, tc.file(f))
			}
			msg := err.Error()
			t.Log(msg)
			for _, s := range []string{"layer 0 (" + string(f.img.Layers[0].Digest) + ")", "store path " + f.foo, tc.file(f), tc.says} {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not say %q", msg, s)
				}
			}
			if strings.Contains(msg, f.bar) {
				t.Errorf("error %q names the unchanged store path %s", msg, f.bar)
			}
		})
	}
}

func TestTarAndBlobChanged(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{f.tarFile, f.blobFile} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.Write([]byte("junk"))
		fh.Close()
	}
	_, err := verifyImage(t, f)
	mismatch(t, err)
	for _, s := range []string{"layer 1 (", f.tarFile, "layer 2 (", f.blobFile} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "layer 0 (") {
		t.Errorf("error %q blames the unchanged layer 0", err)
	}
}

func TestOtherCompressor(t *testing.T) {
	f := newFixture(t)
	f.img.Layers[0].Compressor.Library = "github.com/klauspost/compress@v0.0.1"
	rep, err := verifyImage(t, f)
	if err != nil {
		t.Fatalf("Image() = %v, want the uncompressed check to pass", err)
	}
	if lr := rep.Layers[0]; lr.CompressedChecked || !strings.Contains(lr.Note, "uncompressed digest only") || !strings.Contains(lr.Note, "v0.0.1") {
		t.Errorf("layer 0 report = %+v, want an unchecked compressed digest with a note", lr)
	}
	mkFile(t, filepath.Join(f.foo, "bin", "x"), "changed", 0o755)
	_, err = verifyImage(t, f)
	m := mismatch(t, err)
	if m.File != f.fooBinName || !strings.Contains(err.Error(), "uncompressed digest only") {
		t.Errorf("Image() = %v, want it to name %s and say only the uncompressed digest was checked", err, f.fooBinName)
	}
}

func TestMissingStorePath(t *testing.T) {
	f := newFixture(t)
	if err := os.RemoveAll(f.bar); err != nil {
		t.Fatal(err)
	}
	_, err := verifyImage(t, f)
	if !errors.Is(err, tarstream.ErrMissingPath) || !strings.Contains(err.Error(), f.bar) || !strings.Contains(err.Error(), "layer 0") {
		t.Errorf("Image() = %v, want ErrMissingPath naming layer 0 and %s", err, f.bar)
	}
}

func TestCompressedOnly(t *testing.T) {
	f := newFixture(t)
	f.img.Layers[0].Size++
	_, err := verifyImage(t, f)
	m := mismatch(t, err)
	if m.Index != 0 || m.Path != "" || !strings.Contains(err.Error(), "size") || !strings.Contains(err.Error(), "tar is as described") {
		t.Errorf("Image() = %v, want layer 0's compressed size blamed, not a store path", err)
	}
}
