package layer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

func ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mkStore writes n store paths with a few files each under a temporary
// directory; file sizes grow with big.
func mkStore(t testing.TB, n int, big int) []descriptor.Path {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	r := rand.New(rand.NewPCG(uint64(n), uint64(big)))
	var paths []descriptor.Path
	for i := range n {
		root := filepath.Join(store, fmt.Sprintf("%032d-pkg%d", i, i))
		files := map[string]int{"bin/tool": big, "share/doc/README": 300, "lib/libx.so": big / 3}
		for name, size := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			data := make([]byte, size)
			for j := range data {
				if j%3 == 0 {
					data[j] = byte(r.Uint32())
				} else {
					data[j] = 'a' + byte(j%7)
				}
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("tool", filepath.Join(root, "bin", "alias")); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, descriptor.Path{Path: root})
	}
	return paths
}

func readAll(t testing.TB, l descriptor.Layer, uncompressed bool) []byte {
	t.Helper()
	r, err := layer.Open(ctx(t), l, uncompressed)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading layer: %v", err)
	}
	return b
}

func checkBlob(t *testing.T, l descriptor.Layer) {
	t.Helper()
	blob := readAll(t, l, false)
	if d := digest.FromBytes(blob); d != l.Digest || int64(len(blob)) != l.Size {
		t.Errorf("Open(compressed) = %s (%d bytes), descriptor says %s (%d bytes)", d, len(blob), l.Digest, l.Size)
	}
	tarBytes := readAll(t, l, true)
	if d := digest.FromBytes(tarBytes); d != l.DiffID || int64(len(tarBytes)) != l.UncompressedSize {
		t.Errorf("Open(uncompressed) = %s (%d bytes), descriptor says %s (%d bytes)", d, len(tarBytes), l.DiffID, l.UncompressedSize)
	}
	zr, err := compress.NewReader(descriptor.AlgorithmOf(l.MediaType), bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, tarBytes) {
		t.Error("decompressed blob differs from the uncompressed stream")
	}
}

func TestDescribeOpen(t *testing.T) {
	paths := mkStore(t, 5, 200<<10)
	history := &descriptor.History{CreatedBy: "test"}
	for _, alg := range []string{descriptor.Gzip, descriptor.Zstd, descriptor.None, ""} {
		t.Run(alg, func(t *testing.T) {
			l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: alg, History: history})
			if err != nil {
				t.Fatalf("Describe() = %v", err)
			}
			want := alg
			if want == "" {
				want = layer.DefaultCompression
			}
			c, _ := compress.New(want)
			if l.MediaType != c.MediaType() || l.Compressor != c.Identity() || l.History != history {
				t.Errorf("Describe() media type %q, compressor %+v, history %v; want %q, %+v, %v", l.MediaType, l.Compressor, l.History, c.MediaType(), c.Identity(), history)
			}
			if err := l.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
			if alg == descriptor.None && (l.Digest != l.DiffID || l.Size != l.UncompressedSize) {
				t.Errorf("none: digest %s size %d, want the diff_id %s and size %d", l.Digest, l.Size, l.DiffID, l.UncompressedSize)
			}
			checkBlob(t, l)
			// Per-path shares are tarstream's.
			var buf bytes.Buffer
			shares, err := tarstream.Write(ctx(t), &buf, paths)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Paths) != len(paths) {
				t.Fatalf("Describe() has %d paths, want %d", len(l.Paths), len(paths))
			}
			for i, p := range l.Paths {
				if p.Path != paths[i].Path || p.Digest != shares[i].Digest || p.Fingerprints != shares[i].Fingerprints {
					t.Errorf("path %d = %s %s, want %s %s", i, p.Path, p.Digest, paths[i].Path, shares[i].Digest)
				}
			}
			if paths[0].Digest != "" {
				t.Error("Describe() modified the spec's paths")
			}
			again, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: alg, History: history})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(l, again); diff != "" {
				t.Errorf("second Describe() differs (-first +second):\n%s", diff)
			}
		})
	}
}

func TestTarFile(t *testing.T) {
	paths := mkStore(t, 3, 50<<10)
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "layer.tar")
	l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.Zstd, TarFile: tarFile})
	if err != nil {
		t.Fatalf("Describe(TarFile) = %v", err)
	}
	if l.Tar != tarFile || l.Paths != nil {
		t.Errorf("Describe(TarFile) tar %q paths %v, want %q and none", l.Tar, l.Paths, tarFile)
	}
	data, err := os.ReadFile(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(data) != l.DiffID {
		t.Errorf("tar file digest %s, want diff_id %s", digest.FromBytes(data), l.DiffID)
	}
	checkBlob(t, l)
	fromPaths, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.Zstd})
	if err != nil {
		t.Fatal(err)
	}
	if fromPaths.Digest != l.Digest || fromPaths.DiffID != l.DiffID {
		t.Errorf("the tar file layer has digests %s/%s, the paths layer %s/%s", l.Digest, l.DiffID, fromPaths.Digest, fromPaths.DiffID)
	}
	again, err := layer.DescribeTar(ctx(t), tarFile, descriptor.Zstd, nil)
	if err != nil {
		t.Fatalf("DescribeTar() = %v", err)
	}
	if diff := cmp.Diff(l, again); diff != "" {
		t.Errorf("DescribeTar() differs from Describe(TarFile) (-want +got):\n%s", diff)
	}
	// A failed describe leaves nothing behind.
	bad := filepath.Join(dir, "bad.tar")
	_, err = layer.Describe(ctx(t), layer.Spec{Paths: []descriptor.Path{{Path: filepath.Join(dir, "gone")}}, TarFile: bad})
	if !errors.Is(err, tarstream.ErrMissingPath) {
		t.Errorf("Describe(missing) = %v, want ErrMissingPath", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only layer.tar", names)
	}
}

func TestBlob(t *testing.T) {
	paths := mkStore(t, 2, 10<<10)
	for _, alg := range []string{descriptor.Gzip, descriptor.Zstd, descriptor.None} {
		t.Run(alg, func(t *testing.T) {
			l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: alg})
			if err != nil {
				t.Fatal(err)
			}
			blobFile := filepath.Join(t.TempDir(), "blob")
			if err := os.WriteFile(blobFile, readAll(t, l, false), 0o644); err != nil {
				t.Fatal(err)
			}
			bl := l
			bl.Paths, bl.Blob = nil, blobFile
			checkBlob(t, bl)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	paths := mkStore(t, 1, 8<<20)
	victim := filepath.Join(paths[0].Path, "share", "doc", "README")
	l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.None})
	if err != nil {
		t.Fatal(err)
	}
	r, err := layer.Open(ctx(t), l, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The first byte comes after the walk; the big bin/tool is streamed
	// before share/doc/README, and backpressure keeps the producer there.
	if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	if !errors.Is(err, tarstream.ErrChanged) || !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), paths[0].Path) {
		t.Errorf("reading after a file vanished = %v, want ErrChanged naming the file and store path", err)
	}

	gone := descriptor.Layer{Digest: l.Digest, Compressor: l.Compressor, Paths: []descriptor.Path{{Path: filepath.Join(t.TempDir(), "gone")}}}
	r2, err := layer.Open(ctx(t), gone, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := io.ReadAll(r2); !errors.Is(err, tarstream.ErrMissingPath) {
		t.Errorf("reading a layer of a missing path = %v, want ErrMissingPath", err)
	}
	if _, err := layer.Open(ctx(t), descriptor.Layer{Tar: filepath.Join(t.TempDir(), "x.tar")}, false); err == nil || !strings.Contains(err.Error(), "x.tar") {
		t.Errorf("Open(missing tar) = %v, want an error naming it", err)
	}
	if _, err := layer.Open(ctx(t), descriptor.Layer{}, false); err == nil {
		t.Error("Open(empty layer) = nil error")
	}
}

// TestOpenCloseEarly checks that closing a half-read layer ends its goroutine.
func TestOpenCloseEarly(t *testing.T) {
	paths := mkStore(t, 4, 4<<20)
	l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.Gzip})
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range 5 {
		r, err := layer.Open(ctx(t), l, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after closing, %d before", n, before)
	}
}

func TestDescribeAll(t *testing.T) {
	paths := mkStore(t, 6, 20<<10)
	var specs []layer.Spec
	for i := 0; i < len(paths); i += 2 {
		specs = append(specs, layer.Spec{Paths: paths[i : i+2], Compression: descriptor.Gzip})
	}
	got, err := layer.DescribeAll(ctx(t), specs)
	if err != nil {
		t.Fatalf("DescribeAll() = %v", err)
	}
	for i, s := range specs {
		want, err := layer.Describe(ctx(t), s)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got[i]); diff != "" {
			t.Errorf("layer %d (-Describe +DescribeAll):\n%s", i, diff)
		}
	}
	specs[1].Paths = []descriptor.Path{{Path: filepath.Join(t.TempDir(), "gone")}}
	if _, err := layer.DescribeAll(ctx(t), specs); !errors.Is(err, tarstream.ErrMissingPath) || !strings.Contains(err.Error(), "layer 1") {
		t.Errorf("DescribeAll() = %v, want ErrMissingPath for layer 1", err)
	}
	if _, err := layer.DescribeAll(ctx(t), []layer.Spec{{Paths: paths, Compression: "lz4"}}); !errors.Is(err, compress.ErrUnknownAlgorithm) {
		t.Errorf("DescribeAll(lz4) = %v, want ErrUnknownAlgorithm", err)
	}
}

func TestDescribeAllRemovesTarsOnFailure(t *testing.T) {
	// One good layer per worker, then a failing one: the failing layer is
	// only started once a worker is free, so at least one tar is complete
	// by the time the failure happens.
	good := runtime.NumCPU()
	paths := mkStore(t, good, 20<<10)
	dir := t.TempDir()
	var specs []layer.Spec
	for i := range good {
		specs = append(specs, layer.Spec{Paths: paths[i : i+1], Compression: descriptor.None, TarFile: filepath.Join(dir, fmt.Sprintf("layer-%d.tar", i))})
	}
	specs = append(specs, layer.Spec{Paths: []descriptor.Path{{Path: filepath.Join(t.TempDir(), "gone")}}, Compression: descriptor.None, TarFile: filepath.Join(dir, "bad.tar")})
	if _, err := layer.DescribeAll(ctx(t), specs); err == nil {
		t.Fatal("DescribeAll() = nil error, want the missing path's error")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("DescribeAll() failed but left %s behind", e.Name())
	}
}

func TestRehash(t *testing.T) {
	paths := mkStore(t, 4, 20<<10)
	want0, err := layer.Describe(ctx(t), layer.Spec{Paths: paths[:2], Compression: descriptor.Gzip})
	if err != nil {
		t.Fatal(err)
	}
	tarFile := filepath.Join(t.TempDir(), "l.tar")
	want1, err := layer.Describe(ctx(t), layer.Spec{Paths: paths[2:], Compression: descriptor.None, TarFile: tarFile})
	if err != nil {
		t.Fatal(err)
	}
	blobFile := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blobFile, readAll(t, want0, false), 0o644); err != nil {
		t.Fatal(err)
	}
	want2 := want0
	want2.Paths, want2.Blob = nil, blobFile

	bogus := digest.FromString("from another tar writer")
	foreign := func(l descriptor.Layer) descriptor.Layer {
		l.Digest, l.DiffID, l.UncompressedSize = bogus, bogus, 0
		l.Compressor = descriptor.Compressor{Algorithm: l.Compressor.Algorithm, Library: "nix2container"}
		l.Paths = append([]descriptor.Path(nil), l.Paths...)
		for i := range l.Paths {
			l.Paths[i].Digest, l.Paths[i].Fingerprints = "", ""
		}
		return l
	}
	in0 := foreign(want0)
	in2 := want2
	in2.DiffID, in2.UncompressedSize = "", 0
	img := &descriptor.Image{Architecture: "amd64", OS: "linux", Foreign: true, Layers: []descriptor.Layer{in0, foreign(want1), in2}}
	if err := layer.Rehash(ctx(t), img); err != nil {
		t.Fatalf("Rehash() = %v", err)
	}
	if diff := cmp.Diff([]descriptor.Layer{want0, want1, want2}, img.Layers); diff != "" {
		t.Errorf("Rehash() layers (-want +got):\n%s", diff)
	}
	if img.Foreign {
		t.Error("Rehash() left Foreign set")
	}
	img.Layers[2].Digest = bogus
	img.Layers[2].DiffID = ""
	if err := layer.Rehash(ctx(t), img); err == nil || !strings.Contains(err.Error(), blobFile) {
		t.Errorf("Rehash(blob with a wrong digest) = %v, want an error naming the blob", err)
	}
}

func TestShareMatchesSha(t *testing.T) {
	// With one path and no compression, the path's share is the diff_id's
	// input minus the end-of-archive blocks.
	paths := mkStore(t, 1, 1000)
	l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.None})
	if err != nil {
		t.Fatal(err)
	}
	tarBytes := readAll(t, l, true)
	sum := sha256.Sum256(tarBytes[:len(tarBytes)-1024])
	if want := digest.NewDigestFromBytes(digest.SHA256, sum[:]); l.Paths[0].Digest != want {
		t.Errorf("share = %s, want %s", l.Paths[0].Digest, want)
	}
}
