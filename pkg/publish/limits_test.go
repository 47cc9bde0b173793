package publish

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/dockerload"
)

// deepImage writes a descriptor of n one-file layers, each its own store
// path relocated to /, and returns its directory.
func deepImage(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	paths := make([]descriptor.Path, n)
	for i := range paths {
		paths[i] = rooted(tree(t, map[string]string{fmt.Sprintf("l/%d", i): fmt.Sprint(i)}))
	}
	writeImage(t, dir, descriptor.Gzip, []string{"/l/0"}, paths...)
	return dir
}

// TestCopyRefusesTooManyLayers copies images of dockerload.MaxLayers and
// one more layer to docker-archive: the second is refused naming the
// image, its layer count and the limit, and no archive is written.
func TestCopyRefusesTooManyLayers(t *testing.T) {
	ctx := testContext(t)
	for _, tc := range []struct {
		layers  int
		refused bool
	}{
		{dockerload.MaxLayers, false},
		{dockerload.MaxLayers + 1, true},
	} {
		t.Run(fmt.Sprint(tc.layers), func(t *testing.T) {
			src := "nix:" + deepImage(t, tc.layers)
			archive := filepath.Join(t.TempDir(), "image.tar")
			err := Copy(ctx, src, "docker-archive:"+archive+":nixoci/deep:v1", Options{BlobInfoCacheDir: t.TempDir()})
			if !tc.refused {
				if err != nil {
					t.Fatalf("Copy() of %d layers = %v", tc.layers, err)
				}
				return
			}
			var tm *dockerload.TooManyLayersError
			if !errors.As(err, &tm) || tm.Layers != tc.layers || tm.Limit != dockerload.MaxLayers {
				t.Fatalf("Copy() of %d layers = %v, want a *TooManyLayersError of %d layers, limit %d", tc.layers, err, tc.layers, dockerload.MaxLayers)
			}
			for _, want := range []string{src, fmt.Sprint(tc.layers), fmt.Sprint(dockerload.MaxLayers)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Copy() = %q, does not say %q", err, want)
				}
			}
			if entries, _ := os.ReadDir(filepath.Dir(archive)); len(entries) != 0 {
				t.Errorf("the refused copy left %d files next to the archive", len(entries))
			}
		})
	}
}

func TestStorageDriver(t *testing.T) {
	root, runroot := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "run")
	ref, err := parseRef("destination", fmt.Sprintf("containers-storage:[vfs@%s+%s]nixoci-test/app:v1", root, runroot))
	if err != nil {
		t.Fatal(err)
	}
	if got := storageDriver(ref); got != "vfs" {
		t.Errorf("storageDriver(%s) = %q, want vfs", ref.StringWithinTransport(), got)
	}
	ref, err = parseRef("destination", "oci:"+t.TempDir()+":v1")
	if err != nil {
		t.Fatal(err)
	}
	if got := storageDriver(ref); got != "" {
		t.Errorf("storageDriver(%s) = %q, want none", ref.StringWithinTransport(), got)
	}
}
