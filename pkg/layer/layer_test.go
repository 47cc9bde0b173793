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

// readAll reads l's blob, or its tar when uncompressed.
func readAll(t testing.TB, l layer.Layer, uncompressed bool) []byte {
	t.Helper()
	open := l.Compressed
	if uncompressed {
		open = l.Uncompressed
	}
	r, err := open(ctx(t))
	if err != nil {
		t.Fatalf("open = %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading layer: %v", err)
	}
	return b
}

func checkBlob(t *testing.T, l layer.Layer) {
	t.Helper()
	blob := readAll(t, l, false)
	if d := digest.FromBytes(blob); d != l.Digest() || int64(len(blob)) != l.Size() {
		t.Errorf("Compressed() = %s (%d bytes), layer says %s (%d bytes)", d, len(blob), l.Digest(), l.Size())
	}
	tarBytes := readAll(t, l, true)
	if d := digest.FromBytes(tarBytes); d != l.DiffID() || int64(len(tarBytes)) != l.UncompressedSize() {
		t.Errorf("Uncompressed() = %s (%d bytes), layer says %s (%d bytes)", d, len(tarBytes), l.DiffID(), l.UncompressedSize())
	}
	u := layer.Uncompressed(l)
	if u.Digest() != l.DiffID() || u.Size() != l.UncompressedSize() || !bytes.Equal(readAll(t, u, false), tarBytes) {
		t.Errorf("Uncompressed(l) = %s/%d, want the tar %s/%d", u.Digest(), u.Size(), l.DiffID(), l.UncompressedSize())
	}
	zr, err := compress.NewReader(descriptor.AlgorithmOf(l.MediaType()), bytes.NewReader(blob))
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
			lv, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: alg, History: history})
			if err != nil {
				t.Fatalf("Describe() = %v", err)
			}
			l := lv.(layer.Describer).Descriptor()
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
			checkBlob(t, lv)
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
			if diff := cmp.Diff(l, again.(layer.Describer).Descriptor()); diff != "" {
				t.Errorf("second Describe() differs (-first +second):\n%s", diff)
			}
		})
	}
}

// desc is the descriptor of a layer made by Describe.
func desc(l layer.Layer) descriptor.Layer { return l.(layer.Describer).Descriptor() }

func TestTarFile(t *testing.T) {
	paths := mkStore(t, 3, 50<<10)
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "layer.tar")
	lv, err := layer.Describe(ctx(t), layer.Spec{Paths: append(paths, descriptor.Path{Path: paths[0].Path, Rewrite: &descriptor.Rewrite{Regex: "^" + paths[0].Path, Repl: "/copy"}}), Compression: descriptor.Zstd, TarFile: tarFile})
	if err != nil {
		t.Fatalf("Describe(TarFile) = %v", err)
	}
	l := desc(lv)
	if l.Tar != tarFile || l.Paths != nil {
		t.Errorf("Describe(TarFile) tar %q paths %v, want %q and none", l.Tar, l.Paths, tarFile)
	}
	// A tar layer keeps the store paths it holds at their store location.
	var want []string
	for _, p := range paths {
		want = append(want, p.Path)
	}
	if diff := cmp.Diff(want, l.StorePaths); diff != "" {
		t.Errorf("Describe(TarFile) store paths (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]bool{paths[0].Path: true, paths[1].Path: true, paths[2].Path: true}, layer.StorePaths(lv)); diff != "" {
		t.Errorf("StorePaths(tar layer) (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(data) != l.DiffID {
		t.Errorf("tar file digest %s, want diff_id %s", digest.FromBytes(data), l.DiffID)
	}
	checkBlob(t, lv)
	again, err := layer.DescribeTar(ctx(t), tarFile, descriptor.Zstd, nil)
	if err != nil {
		t.Fatalf("DescribeTar() = %v", err)
	}
	if a := desc(again); a.Digest != l.Digest || a.DiffID != l.DiffID || a.Tar != tarFile {
		t.Errorf("DescribeTar() = %+v, want the digests of Describe(TarFile) %+v", a, l)
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
	// A tar that changed since it was described fails the read, naming it.
	if err := os.Chmod(tarFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarFile, append(data[:len(data)-1], 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(context.Context) (io.ReadCloser, error){lv.Compressed, lv.Uncompressed} {
		r, err := open(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		r.Close()
		if !errors.Is(err, layer.ErrMismatch) || !strings.Contains(err.Error(), tarFile) {
			t.Errorf("reading a changed tar = %v, want ErrMismatch naming %s", err, tarFile)
		}
	}
}

func TestBlob(t *testing.T) {
	paths := mkStore(t, 2, 10<<10)
	for _, alg := range []string{descriptor.Gzip, descriptor.Zstd, descriptor.None} {
		t.Run(alg, func(t *testing.T) {
			lv, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: alg})
			if err != nil {
				t.Fatal(err)
			}
			blobFile := filepath.Join(t.TempDir(), "blob")
			blob := readAll(t, lv, false)
			if err := os.WriteFile(blobFile, blob, 0o644); err != nil {
				t.Fatal(err)
			}
			bl := desc(lv)
			bl.Paths, bl.Blob = nil, blobFile
			b, err := layer.FromDescriptor(bl)
			if err != nil {
				t.Fatal(err)
			}
			checkBlob(t, b)
			if err := layer.Reproducible(b); err != nil {
				t.Errorf("Reproducible(blob) = %v, want nil: a blob is served as stored", err)
			}
			// A blob that changed fails the read, naming the file.
			if err := os.WriteFile(blobFile, append(blob[:len(blob):len(blob)], 0), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := b.Compressed(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(r)
			r.Close()
			if !errors.Is(err, layer.ErrMismatch) || !strings.Contains(err.Error(), blobFile) {
				t.Errorf("reading a changed blob = %v, want ErrMismatch naming %s", err, blobFile)
			}
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
	r, err := l.Compressed(ctx(t))
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

	gone := desc(l)
	gone.Paths = []descriptor.Path{{Path: filepath.Join(t.TempDir(), "gone")}}
	g, err := layer.FromDescriptor(gone)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.Compressed(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := io.ReadAll(r2); !errors.Is(err, tarstream.ErrMissingPath) {
		t.Errorf("reading a layer of a missing path = %v, want ErrMissingPath", err)
	}
	missingTar := desc(l)
	missingTar.Paths, missingTar.Tar = nil, filepath.Join(t.TempDir(), "x.tar")
	mt, err := layer.FromDescriptor(missingTar)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mt.Uncompressed(ctx(t)); err == nil || !strings.Contains(err.Error(), "x.tar") {
		t.Errorf("Uncompressed(missing tar) = %v, want an error naming it", err)
	}
	if _, err := layer.FromDescriptor(descriptor.Layer{Digest: l.Digest(), DiffID: l.DiffID()}); err == nil {
		t.Error("FromDescriptor(no source) = nil error")
	}
}

// TestDrift checks that a store file changed after the build fails the
// stream before its end, naming the store path and the file.
func TestDrift(t *testing.T) {
	for _, alg := range []string{descriptor.Gzip, descriptor.None} {
		t.Run(alg, func(t *testing.T) {
			paths := mkStore(t, 3, 20<<10)
			l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: alg})
			if err != nil {
				t.Fatal(err)
			}
			victim := filepath.Join(paths[1].Path, "share", "doc", "README")
			data, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			data[0] ^= 0xff // same size, other bytes
			if err := os.WriteFile(victim, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := l.Compressed(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			var m *layer.MismatchError
			if !errors.As(err, &m) || m.Path != paths[1].Path || !strings.HasSuffix(m.File, "share/doc/README") {
				t.Fatalf("reading a drifted layer = %v, want a MismatchError naming %s and share/doc/README", err, paths[1].Path)
			}
			if !strings.Contains(err.Error(), "nixoci verify") {
				t.Errorf("error %q does not say what to do", err)
			}
			if int64(len(got)) >= l.Size() {
				t.Errorf("the drifted stream delivered %d bytes of %d: it must end before the whole blob", len(got), l.Size())
			}
		})
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
		r, err := l.Compressed(ctx(t))
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
		if diff := cmp.Diff(desc(want), desc(got[i])); diff != "" {
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

// TestLoadForeign checks that layers described by nix2container are
// described anew by Load, and that other layers load as they are.
func TestLoadForeign(t *testing.T) {
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
	want2 := desc(want0)
	want2.Paths, want2.Blob = nil, blobFile
	want2.Compressor.Library = descriptor.Nix2ContainerLibrary

	bogus := digest.FromString("from another tar writer")
	foreign := func(l descriptor.Layer) descriptor.Layer {
		l.Digest, l.DiffID, l.UncompressedSize = bogus, bogus, 0
		l.Compressor = descriptor.Compressor{Algorithm: l.Compressor.Algorithm, Library: descriptor.Nix2ContainerLibrary}
		l.Paths = append([]descriptor.Path(nil), l.Paths...)
		for i := range l.Paths {
			l.Paths[i].Digest, l.Paths[i].Fingerprints = "", ""
		}
		l.StorePaths = nil
		return l
	}
	in2 := want2
	in2.DiffID, in2.UncompressedSize = "", 0
	got, err := layer.LoadAll(ctx(t), []descriptor.Layer{foreign(desc(want0)), foreign(desc(want1)), in2})
	if err != nil {
		t.Fatalf("LoadAll() = %v", err)
	}
	w1 := desc(want1)
	w1.StorePaths = nil // nix2container's tar lists no store paths
	if diff := cmp.Diff([]descriptor.Layer{desc(want0), w1, want2}, []descriptor.Layer{desc(got[0]), desc(got[1]), desc(got[2])}); diff != "" {
		t.Errorf("LoadAll() layers (-want +got):\n%s", diff)
	}
	in2.Digest = bogus
	if _, err := layer.Load(ctx(t), in2); err == nil || !strings.Contains(err.Error(), blobFile) {
		t.Errorf("Load(blob with a wrong digest) = %v, want an error naming the blob", err)
	}
	// A layer of nixoci's own loads as described, unread.
	own := desc(want0)
	own.Digest = bogus
	l, err := layer.Load(ctx(t), own)
	if err != nil || l.Digest() != bogus {
		t.Errorf("Load(own layer) = %v, %v; want it as described", l, err)
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
	if want := digest.NewDigestFromBytes(digest.SHA256, sum[:]); desc(l).Paths[0].Digest != want {
		t.Errorf("share = %s, want %s", desc(l).Paths[0].Digest, want)
	}
}

// TestReproducible checks the compressor identity check behind serving a
// layer's compressed blob.
func TestReproducible(t *testing.T) {
	paths := mkStore(t, 1, 1000)
	l, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.Gzip})
	if err != nil {
		t.Fatal(err)
	}
	if err := layer.Reproducible(l); err != nil {
		t.Errorf("Reproducible(own gzip layer) = %v", err)
	}
	other := desc(l)
	other.Compressor.Library = "github.com/klauspost/compress@v0.0.1"
	o, err := layer.FromDescriptor(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := layer.Reproducible(o); err == nil || !strings.Contains(err.Error(), "v0.0.1") {
		t.Errorf("Reproducible(other library) = %v, want an error naming it", err)
	}
}

// TestFromDescriptorSources checks that a descriptor must name exactly one
// source for the layer's bytes.
func TestFromDescriptorSources(t *testing.T) {
	d := digest.FromString("x")
	base := descriptor.Layer{MediaType: descriptor.MediaType(descriptor.None), Digest: d, DiffID: d, Compressor: descriptor.Compressor{Algorithm: descriptor.None}}
	for _, tc := range []struct {
		name   string
		mutate func(l *descriptor.Layer)
		want   string
	}{
		{"none", func(l *descriptor.Layer) {}, "names no store paths, tar, blob or archive member"},
		{"tar and blob", func(l *descriptor.Layer) { l.Tar, l.Blob = "/t", "/b" }, "only one of"},
		{"paths and tar", func(l *descriptor.Layer) { l.Tar, l.Paths = "/t", []descriptor.Path{{Path: "/p"}} }, "only one of"},
		{"store paths of a paths layer", func(l *descriptor.Layer) {
			l.Paths, l.StorePaths = []descriptor.Path{{Path: "/p"}}, []string{"/p"}
		}, "storePaths belongs to a tar layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := base
			tc.mutate(&l)
			if _, err := layer.FromDescriptor(l); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromDescriptor() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
