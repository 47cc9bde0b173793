package publish

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage"
	"go.podman.io/storage/types"
)

func TestCopyToContainersStorage(t *testing.T) {
	ctx := testContext(t)
	dir, img := twoLayerImage(t)
	root, runroot := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "run")
	dest := fmt.Sprintf("containers-storage:[vfs@%s+%s]nixoci-test/app:v1", root, runroot)
	t.Cleanup(func() {
		store, err := storage.GetStore(types.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: "vfs"})
		if err == nil {
			store.Shutdown(true)
		}
	})

	var first, second bytes.Buffer
	if err := Copy(ctx, "nix:"+dir, dest, Options{BlobInfoCacheDir: t.TempDir(), Progress: &first}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	for _, l := range img.Layers {
		// Served uncompressed: the blob is the plain tar, named by its diff_id.
		if line := fmt.Sprintf("blob %s: done (%d bytes)", l.DiffID, l.UncompressedSize); !strings.Contains(first.String(), line) {
			t.Errorf("first copy report lacks %q:\n%s", line, first.String())
		}
	}
	if err := Copy(ctx, "nix:"+dir, dest, Options{BlobInfoCacheDir: t.TempDir(), Progress: &second}); err != nil {
		t.Fatalf("second Copy() = %v", err)
	}
	for _, l := range img.Layers {
		if line := fmt.Sprintf("blob %s: skipped: already exists", l.DiffID); !strings.Contains(second.String(), line) {
			t.Errorf("second copy report lacks %q:\n%s", line, second.String())
		}
	}

	store, err := storage.GetStore(types.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: "vfs"})
	if err != nil {
		t.Fatal(err)
	}
	si, err := store.Image("docker.io/nixoci-test/app:v1")
	if err != nil {
		t.Fatalf("image in store: %v", err)
	}
	var diffIDs []string
	for id := si.TopLayer; id != ""; {
		l, err := store.Layer(id)
		if err != nil {
			t.Fatal(err)
		}
		diffIDs = append([]string{l.UncompressedDigest.String()}, diffIDs...)
		id = l.Parent
	}
	want := []string{img.Layers[0].DiffID.String(), img.Layers[1].DiffID.String()}
	if strings.Join(diffIDs, " ") != strings.Join(want, " ") {
		t.Errorf("store layers = %v, want %v", diffIDs, want)
	}
}

// shutdownStore releases a test's containers-storage store.
func shutdownStore(root, runroot string) {
	store, err := storage.GetStore(types.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: "vfs"})
	if err == nil {
		store.Shutdown(true)
	}
}
