package nix

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

func openSource(t *testing.T, s string) types.ImageSource {
	t.Helper()
	ref, err := ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(context.Background(), nil)
	if err != nil {
		t.Fatalf("NewImageSource(%s) = %v", s, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func manifestOf(t *testing.T, src types.ImageSource) ocispec.Manifest {
	t.Helper()
	data, mt, err := src.GetManifest(context.Background(), nil)
	if err != nil {
		t.Fatalf("GetManifest() = %v", err)
	}
	if mt != ocispec.MediaTypeImageManifest {
		t.Errorf("GetManifest() type = %q, want %q", mt, ocispec.MediaTypeImageManifest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

// readBlob reads a blob and checks it against its descriptor.
func readBlob(t *testing.T, src types.ImageSource, d ocispec.Descriptor) []byte {
	t.Helper()
	rc, size, err := src.GetBlob(context.Background(), types.BlobInfo{Digest: d.Digest, Size: -1}, nil)
	if err != nil {
		t.Fatalf("GetBlob(%s) = %v", d.Digest, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading blob %s: %v", d.Digest, err)
	}
	if size != d.Size || int64(len(data)) != size {
		t.Errorf("GetBlob(%s) size = %d, read %d bytes, want %d", d.Digest, size, len(data), d.Size)
	}
	if got := digest.FromBytes(data); got != d.Digest {
		t.Errorf("GetBlob(%s) content digest = %s", d.Digest, got)
	}
	return data
}

// tarNames lists the regular files of a tar.
func tarNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
		}
	}
	sort.Strings(names)
	return names
}

func TestSource(t *testing.T) {
	a := tree(t, map[string]string{"bin/a": "alpha"})
	b := tree(t, map[string]string{"share/b": strings.Repeat("beta", 1000)})
	for _, tc := range []struct {
		name         string
		compression  string
		suffix       string
		wantType     string
		uncompressed bool
	}{
		{"gzip", descriptor.Gzip, "", ocispec.MediaTypeImageLayerGzip, false},
		{"zstd", descriptor.Zstd, "", ocispec.MediaTypeImageLayerZstd, false},
		{"none", descriptor.None, "", ocispec.MediaTypeImageLayer, true},
		{"gzip served uncompressed", descriptor.Gzip, ":uncompressed", ocispec.MediaTypeImageLayer, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := writeImage(t, dir, tc.compression, a, b)
			src := openSource(t, dir+tc.suffix)
			if src.Reference().StringWithinTransport() != dir+tc.suffix {
				t.Errorf("Reference() = %s, want %s", src.Reference().StringWithinTransport(), dir+tc.suffix)
			}
			m := manifestOf(t, src)
			if len(m.Layers) != 2 {
				t.Fatalf("manifest has %d layers, want 2", len(m.Layers))
			}
			cfgData := readBlob(t, src, m.Config)
			var cfg ocispec.Image
			if err := json.Unmarshal(cfgData, &cfg); err != nil {
				t.Fatalf("config: %v", err)
			}
			want := [][]string{{"bin/a"}, {"share/b"}}
			for i, ld := range m.Layers {
				if ld.MediaType != tc.wantType {
					t.Errorf("layer %d media type = %q, want %q", i, ld.MediaType, tc.wantType)
				}
				l := img.Layers[i]
				wantDigest, wantSize := l.Digest, l.Size
				if tc.uncompressed {
					wantDigest, wantSize = l.DiffID, l.UncompressedSize
				}
				if ld.Digest != wantDigest || ld.Size != wantSize {
					t.Errorf("layer %d = %s/%d, want %s/%d", i, ld.Digest, ld.Size, wantDigest, wantSize)
				}
				if cfg.RootFS.DiffIDs[i] != l.DiffID {
					t.Errorf("config diff_id %d = %s, want %s", i, cfg.RootFS.DiffIDs[i], l.DiffID)
				}
				data := readBlob(t, src, ld)
				var r io.Reader = strings.NewReader(string(data))
				if !tc.uncompressed {
					zr, err := compress.NewReader(tc.compression, r)
					if err != nil {
						t.Fatal(err)
					}
					defer zr.Close()
					r = zr
				}
				names := tarNames(t, r)
				var got []string
				for _, n := range names {
					got = append(got, strings.TrimPrefix(n, strings.TrimPrefix(filepath.Join([]string{a, b}[i]), "/")+"/"))
				}
				if !cmp.Equal(got, want[i]) {
					t.Errorf("layer %d files = %v, want %v", i, names, want[i])
				}
			}
		})
	}
}

func TestSourceMethods(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, dir, descriptor.Gzip, tree(t, map[string]string{"f": "x"}))
	src := openSource(t, filepath.Join(dir, descriptor.ImageFileName))
	ctx := context.Background()
	if !src.HasThreadSafeGetBlob() {
		t.Errorf("HasThreadSafeGetBlob() = false, want true")
	}
	if sigs, err := src.GetSignatures(ctx, nil); err != nil || len(sigs) != 0 {
		t.Errorf("GetSignatures() = %v, %v; want none", sigs, err)
	}
	if infos, err := src.LayerInfosForCopy(ctx, nil); err != nil || infos != nil {
		t.Errorf("LayerInfosForCopy() = %v, %v; want nil, nil", infos, err)
	}
	d := digest.FromString("something else")
	if _, _, err := src.GetManifest(ctx, &d); !errors.Is(err, ErrNotAList) {
		t.Errorf("GetManifest(instance) = %v, want ErrNotAList", err)
	}
	if rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: d}, nil); !errors.Is(err, ErrUnknownBlob) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("GetBlob(unknown) = %v, want ErrUnknownBlob", err)
	}
	if !strings.Contains(err2s(src.GetBlob(ctx, types.BlobInfo{Digest: d}, nil)), d.String()) {
		t.Errorf("GetBlob(unknown) error does not name the digest")
	}

	// Layers can be read concurrently.
	m := manifestOf(t, src)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readBlob(t, src, m.Layers[0])
		}()
	}
	wg.Wait()

	img, err := src.Reference().NewImage(ctx, nil)
	if err != nil {
		t.Fatalf("NewImage() = %v", err)
	}
	defer img.Close()
	if got := img.LayerInfos(); len(got) != 1 || got[0].Digest != m.Layers[0].Digest {
		t.Errorf("NewImage().LayerInfos() = %v, want the manifest's layer", got)
	}
}

func err2s(rc io.ReadCloser, _ int64, err error) string {
	if rc != nil {
		rc.Close()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	future := filepath.Join(dir, "future.json")
	if err := os.WriteFile(future, []byte(`{"nixoci": 99, "architecture": "amd64", "os": "linux", "layers": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")
	for _, tc := range []struct {
		name  string
		path  string
		check func(error) bool
	}{
		{"missing", missing, func(err error) bool {
			var pe *fs.PathError
			return errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe)
		}},
		{"garbage", garbage, func(err error) bool {
			var se *json.SyntaxError
			return errors.As(err, &se)
		}},
		{"unknown version", future, func(err error) bool { return errors.Is(err, descriptor.ErrUnknownVersion) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := NewReference(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			src, err := ref.NewImageSource(context.Background(), nil)
			if err == nil {
				src.Close()
				t.Fatalf("NewImageSource(%s) = nil error", tc.path)
			}
			if !tc.check(err) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("NewImageSource(%s) = %v (%T), not the expected error naming the file", tc.path, err, errors.Unwrap(err))
			}
		})
	}

	t.Run("store path gone", func(t *testing.T) {
		dir := t.TempDir()
		p := tree(t, map[string]string{"f": "x"})
		writeImage(t, dir, descriptor.Gzip, p)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		src := openSource(t, dir)
		m := manifestOf(t, src)
		rc, _, err := src.GetBlob(context.Background(), types.BlobInfo{Digest: m.Layers[0].Digest}, nil)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("reading a layer whose store path is gone = %v, want an error naming %s", err, p)
		}
	})
}

func TestSourceFallsBackToUncompressed(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, dir, descriptor.Gzip, tree(t, map[string]string{"f": "x"}), tree(t, map[string]string{"g": "y"}))
	// Pretend both layers were compressed by another library version.
	for i := range img.Layers {
		img.Layers[i].Compressor.Library = compress.Module + "@v0.0.1-other"
	}
	if err := descriptor.Write(filepath.Join(dir, descriptor.ImageFileName), img); err != nil {
		t.Fatal(err)
	}
	// A library stays quiet unless given a logger.
	global := logtest.NewGlobal()
	defer global.Reset()
	openSource(t, dir)
	if n := len(global.AllEntries()); n != 0 {
		t.Errorf("opening a source without a logger logged %d entries to the global logger, want none", n)
	}
	logger, hook := logtest.NewNullLogger()
	ref, err := ParseReference(dir, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("got %d warnings %q, want exactly 1", len(warnings), warnings)
	}
	for _, want := range []string{"uncompressed", "@v0.0.1-other", compress.Library()} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("warning %q does not mention %q", warnings[0], want)
		}
	}
	m := manifestOf(t, src)
	for i, ld := range m.Layers {
		if ld.Digest != img.Layers[i].DiffID || ld.MediaType != ocispec.MediaTypeImageLayer {
			t.Errorf("layer %d = %s %s, want the plain tar %s", i, ld.MediaType, ld.Digest, img.Layers[i].DiffID)
		}
		readBlob(t, src, ld)
	}
}
