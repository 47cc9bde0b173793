package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nixoci/nixoci/tests/testenv"
	digest "github.com/opencontainers/go-digest"
)

// digests returns the blob digests and diff_ids of a descriptor's layers.
func (b builtImage) digests() (blobs, diffIDs []string) {
	for _, l := range b.Image.Layers {
		blobs = append(blobs, l.Digest.String())
		diffIDs = append(diffIDs, l.DiffID.String())
	}
	return blobs, diffIDs
}

// copyImage runs `nixoci copy nix:IMAGE dest` with extra flags.
func copyImage(t *testing.T, ctx context.Context, img builtImage, dest string, flags ...string) testenv.Result {
	t.Helper()
	args := append([]string{"copy"}, flags...)
	args = append(args, "nix:"+img.Path, dest)
	return testenv.Must(t, ctx, nixoci(t), args...)
}

// skippedLayers counts the layers of img that the copy report says were
// skipped: lines naming the layer's blob digest or diff_id with
// "skipped: already exists".
func skippedLayers(img builtImage, r testenv.Result) int {
	out := r.Stdout + r.Stderr
	n := 0
	for _, l := range img.Image.Layers {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "skipped: already exists") &&
				(strings.Contains(line, l.Digest.String()) || strings.Contains(line, l.DiffID.String())) {
				n++
				break
			}
		}
	}
	return n
}

func TestRegistry(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireTools(t, "skopeo")
	reg := registry(t, ctx)
	img := buildImage(t, ctx, newStore(t))
	ref := "docker://" + reg + "/" + uniqueName(t) + ":v1"
	first := copyImage(t, ctx, img, ref, "--dest-tls-verify=false")

	r := testenv.Must(t, ctx, "skopeo", "inspect", "--tls-verify=false", ref)
	var info struct {
		Layers     []string
		LayersData []struct {
			Digest   string
			MIMEType string
			Size     int64
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
		t.Fatalf("skopeo inspect output: %v\n%s", err, r.Stdout)
	}
	blobs, _ := img.digests()
	if diff := cmp.Diff(blobs, info.Layers); diff != "" {
		t.Errorf("skopeo inspect layers differ from the descriptor's digests (-descriptor +registry):\n%s", diff)
	}
	for i, l := range info.LayersData {
		if i < len(img.Image.Layers) && l.Size != img.Image.Layers[i].Size {
			t.Errorf("layer %d size in registry = %d, want descriptor's %d", i, l.Size, img.Image.Layers[i].Size)
		}
	}

	// A second push finds every blob in the registry.
	second := copyImage(t, ctx, img, ref, "--dest-tls-verify=false")
	if got := skippedLayers(img, second); got != len(blobs) {
		t.Errorf("second copy reported %d skipped layers, want %d:\nfirst:\n%s\nsecond:\n%s", got, len(blobs), first, second)
	}
}

func TestDockerDaemon(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireDocker(t)
	img := buildImage(t, ctx, newStore(t))
	name := uniqueName(t) + ":v1"
	t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "docker", "rmi", "-f", name) })

	copyImage(t, ctx, img, "docker-daemon:"+name)
	r := testenv.Must(t, ctx, "docker", "run", "--rm", "--network", "none", name)
	if got := strings.TrimSpace(r.Stdout); got != hello {
		t.Errorf("docker run printed %q, want %q", got, hello)
	}
	checkStored(t, ctx, img, "docker-daemon:"+name, "docker", name)
}

func TestContainersStorage(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireRoot(t, "the containers-storage destination")
	testenv.RequireTools(t, "podman")
	img := buildImage(t, ctx, newStore(t))
	name := "localhost/" + uniqueName(t) + ":v1"
	t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "podman", "rmi", "-f", name) })

	copyImage(t, ctx, img, "containers-storage:"+name)
	checkStored(t, ctx, img, "containers-storage:"+name, "podman", name)
}

func TestOCILayout(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireTools(t, "umoci")
	s := newStore(t)
	img := buildImage(t, ctx, s)
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	copyImage(t, ctx, img, "oci:"+layout+":v1")

	bundle := filepath.Join(dir, "bundle")
	testenv.Must(t, ctx, "umoci", "unpack", "--rootless", "--image", layout+":v1", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	for _, p := range []string{
		"bin/busybox", // copy-to-root
		"etc/motd",    // copy-to-root
		strings.TrimPrefix(s.Data, "/") + "/share/data.txt", // a plain store path
		strings.TrimPrefix(s.Busybox, "/") + "/bin/busybox",
	} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("unpacked rootfs lacks /%s: %v", p, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(rootfs, "etc", "motd")); err != nil || string(got) != "welcome to a nixoci image\n" {
		t.Errorf("unpacked /etc/motd = %q, %v, want the store path's content", got, err)
	}
	if got, err := os.Readlink(filepath.Join(rootfs, strings.TrimPrefix(s.Data, "/"), "share", "link.txt")); err != nil || got != "data.txt" {
		t.Errorf("unpacked symlink = %q, %v, want data.txt", got, err)
	}
}

func TestDockerArchive(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireDocker(t)
	img := buildImage(t, ctx, newStore(t))
	name := uniqueName(t) + ":v1"
	t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "docker", "rmi", "-f", name) })
	archive := filepath.Join(t.TempDir(), "image.tar")
	copyImage(t, ctx, img, "docker-archive:"+archive+":"+name)

	r := testenv.Must(t, ctx, "docker", "load", "-i", archive)
	if !strings.Contains(r.Stdout, name) {
		t.Errorf("docker load printed %q, want it to name %s", r.Stdout, name)
	}
	r = testenv.Must(t, ctx, "docker", "run", "--rm", "--network", "none", name)
	if got := strings.TrimSpace(r.Stdout); got != hello {
		t.Errorf("docker run printed %q, want %q", got, hello)
	}
}

// checkStored checks img after a copy to dest, an image store that tool
// (docker or podman) reads: `tool image inspect name` lists the
// descriptor's diff_ids as its RootFS layers, and a second copy to dest
// skips every layer.
func checkStored(t *testing.T, ctx context.Context, img builtImage, dest, tool, name string) {
	t.Helper()
	r := testenv.Must(t, ctx, tool, "image", "inspect", "--format", "{{json .RootFS.Layers}}", name)
	_, diffIDs := img.digests()
	checkJSONList(t, tool+" image inspect RootFS.Layers", r.Stdout, diffIDs)

	second := copyImage(t, ctx, img, dest)
	if got := skippedLayers(img, second); got != len(diffIDs) {
		t.Errorf("second copy to %s reported %d layers skipped, want all %d:\n%s", dest, got, len(diffIDs), second)
	}
}

// checkJSONList compares a JSON list of digests printed by a tool with want.
func checkJSONList(t *testing.T, what, out string, want []string) {
	t.Helper()
	var got []digest.Digest
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &got); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	gotS := make([]string, len(got))
	for i, d := range got {
		gotS[i] = d.String()
	}
	if diff := cmp.Diff(want, gotS); diff != "" {
		t.Errorf("%s differs from the descriptor's diff_ids (-descriptor +got):\n%s", what, diff)
	}
}
