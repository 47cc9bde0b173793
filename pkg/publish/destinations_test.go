package publish

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// layoutTags reads an OCI layout's index.json and returns its tags, after
// checking that every manifest, config and layer it names is there.
func layoutTags(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatalf("layout index: %v", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatalf("layout index %s: %v", data, err)
	}
	blob := func(d ocispec.Descriptor) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil || int64(len(b)) != d.Size {
			t.Fatalf("layout blob %s: %d bytes, %v; want %d", d.Digest, len(b), err, d.Size)
		}
		return b
	}
	var tags []string
	for _, d := range idx.Manifests {
		var m ocispec.Manifest
		if err := json.Unmarshal(blob(d), &m); err != nil {
			t.Fatal(err)
		}
		blob(m.Config)
		for _, l := range m.Layers {
			blob(l)
		}
		if tag := d.Annotations[ocispec.AnnotationRefName]; tag != "" {
			tags = append(tags, tag)
		}
	}
	sort.Strings(tags)
	return tags
}

// smallImages writes n one-layer images that differ, and returns their
// directories.
func smallImages(t *testing.T, n int) []string {
	t.Helper()
	var dirs []string
	for i := range n {
		dir := filepath.Join(t.TempDir(), "image")
		writeImage(t, dir, descriptor.Gzip, nil, rooted(tree(t, map[string]string{"n": fmt.Sprint(i)})))
		dirs = append(dirs, dir)
	}
	return dirs
}

// TestParallelCopiesIntoOneLayout copies four images at once into one
// oci: layout, new or holding an earlier image: every copy succeeds and
// the layout keeps every tag.
func TestParallelCopiesIntoOneLayout(t *testing.T) {
	ctx := testContext(t)
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) {
			parent := t.TempDir()
			layout := filepath.Join(parent, "layout")
			images := smallImages(t, 5)
			want := []string{"t1", "t2", "t3", "t4"}
			if existing {
				if err := Copy(ctx, "nix:"+images[0], "oci:"+layout+":t0", Options{}); err != nil {
					t.Fatal(err)
				}
				want = append([]string{"t0"}, want...)
			}
			errs := make([]error, 4)
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = Copy(ctx, "nix:"+images[i+1], fmt.Sprintf("oci:%s:t%d", layout, i+1), Options{})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("Copy(t%d) = %v", i+1, err)
				}
			}
			if got := layoutTags(t, layout); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("layout tags = %v, want %v", got, want)
			}
			if left := siblings(t, parent, "layout"); len(left) != 0 {
				t.Errorf("the copies left %v next to the layout", left)
			}
			// A tag copied again moves to the new image, and stays one tag.
			if err := Copy(ctx, "nix:"+images[0], "oci:"+layout+":t1", Options{}); err != nil {
				t.Fatal(err)
			}
			if got := layoutTags(t, layout); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("layout tags after re-tagging t1 = %v, want %v", got, want)
			}
		})
	}
}

// TestArchiveDestinationsAreAtomic checks docker-archive: and oci-archive:
// destinations: a failed or cancelled copy leaves nothing, and a rerun
// works.
func TestArchiveDestinationsAreAtomic(t *testing.T) {
	ctx := testContext(t)
	good, _ := twoLayerImage(t)
	for _, transport := range []string{"docker-archive", "oci-archive"} {
		suffix := ":nixoci/app:v1"
		if transport == "oci-archive" {
			suffix = ":v1"
		}
		t.Run(transport+"/failed", func(t *testing.T) {
			parent := t.TempDir()
			file := filepath.Join(parent, "image.tar")
			for _, how := range []string{"store path gone", "content changed"} {
				if err := Copy(ctx, "nix:"+brokenImage(t, how), transport+":"+file+suffix, Options{}); err == nil {
					t.Fatalf("Copy() from a broken image (%s) = nil, want an error", how)
				}
				if left := siblings(t, parent); len(left) != 0 {
					t.Fatalf("failed Copy() (%s) left %v", how, left)
				}
			}
			if err := Copy(ctx, "nix:"+good, transport+":"+file+suffix, Options{}); err != nil {
				t.Fatalf("Copy() after the failures = %v", err)
			}
			checkArchive(t, file)
			if left := siblings(t, parent, "image.tar"); len(left) != 0 {
				t.Errorf("Copy() left %v next to the archive", left)
			}
		})
		t.Run(transport+"/cancelled", func(t *testing.T) {
			// A source that trickles keeps the copy going until the
			// context ends, as a signal ends nixoci's.
			proxy, host := testenv.StartFaultRegistry(t)
			src := "docker://" + host + "/nixoci/slow:v1"
			if err := Copy(ctx, "nix:"+randomImage(t, 64<<10), src, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			proxy.Add(testenv.Rule{Fault: testenv.Trickle, Method: http.MethodGet, Path: testenv.Blobs})
			parent := t.TempDir()
			file := filepath.Join(parent, "image.tar")
			cctx, cancel := context.WithCancel(ctx)
			go func() {
				// Cancel once the copy is writing.
				for range 200 {
					if len(siblings(t, parent)) > 0 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(300 * time.Millisecond)
				cancel()
			}()
			err := Copy(cctx, src, transport+":"+file+suffix, Options{SrcTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), StallTimeout: durationPtr(0)})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Copy() = %v, want context.Canceled", err)
			}
			if left := siblings(t, parent); len(left) != 0 {
				t.Fatalf("cancelled Copy() left %v", left)
			}
		})
	}
	t.Run("docker-archive/existing", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "image.tar")
		if err := Copy(ctx, "nix:"+good, "docker-archive:"+file+":nixoci/app:v1", Options{}); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(file)
		err := Copy(ctx, "nix:"+good, "docker-archive:"+file+":nixoci/app:v2", Options{})
		if !errors.Is(err, ErrDestinationExists) || !strings.Contains(err.Error(), file) {
			t.Errorf("Copy() onto an archive = %v, want ErrDestinationExists naming %s", err, file)
		}
		if after, _ := os.ReadFile(file); string(after) != string(before) {
			t.Errorf("the refused copy changed %s", file)
		}
	})
	t.Run("oci-archive/replaced", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "image.tar")
		for range 2 {
			if err := Copy(ctx, "nix:"+good, "oci-archive:"+file+":v1", Options{}); err != nil {
				t.Fatal(err)
			}
			checkArchive(t, file)
		}
	})
}

// checkArchive checks that file is a whole tar holding a manifest.
func checkArchive(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		names[h.Name] = true
	}
	if !names["manifest.json"] && !names["index.json"] {
		t.Errorf("%s holds no manifest.json or index.json: %v", file, names)
	}
}
