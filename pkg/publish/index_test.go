package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	storagetypes "go.podman.io/storage/types"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
)

// writeIndex writes one image per architecture, each with a shared layer
// and one of its own saying its architecture, and an index of them; it
// returns the index file and the index document.
func writeIndex(t *testing.T, archs ...string) (string, *descriptor.Index) {
	t.Helper()
	dir := t.TempDir()
	shared := rooted(tree(t, map[string]string{"etc/shared": "shared\n"}))
	var images []image.IndexImage
	for _, arch := range archs {
		imgDir := filepath.Join(dir, arch)
		own := rooted(tree(t, map[string]string{"etc/arch": arch + "\n"}))
		d := writeImage(t, imgDir, descriptor.Gzip, []string{"/bin/cat", "/etc/arch"}, shared, own)
		d.Architecture = arch
		p := filepath.Join(imgDir, descriptor.ImageFileName)
		if err := descriptor.Write(p, d); err != nil {
			t.Fatal(err)
		}
		img, err := image.Load(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, image.IndexImage{Path: p, Image: img})
	}
	idx, err := image.AssembleIndex("multi", "v1", images)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "index.json")
	if err := image.WriteIndex(file, idx); err != nil {
		t.Fatal(err)
	}
	d, err := descriptor.LoadIndex(file)
	if err != nil {
		t.Fatal(err)
	}
	return file, d
}

// TestCopyIndexToRegistry pushes an index of three platforms: the
// registry gets the index and every image, as the index document records
// them; a fresh machine's repush asks only for the index.
func TestCopyIndexToRegistry(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	file, d := writeIndex(t, "amd64", "arm64", "s390x")
	dest := "docker://" + reg.host + "/nixoci/multi:v1"
	var report bytes.Buffer
	if err := Copy(ctx, "nix:"+file, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), Progress: &report}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	want := servedManifest(t, file)
	got := registryManifest(t, reg.host, "nixoci/multi", "v1")
	if !bytes.Equal(got, want) {
		t.Fatalf("registry index =\n%s\nwant\n%s", got, want)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(got, &idx); err != nil {
		t.Fatal(err)
	}
	for i, e := range idx.Manifests {
		if e.Digest != d.Manifests[i].Digest || e.Platform.Architecture != d.Manifests[i].Platform.Architecture {
			t.Errorf("index entry %d = %s for %+v, want %s for %s", i, e.Digest, e.Platform, d.Manifests[i].Digest, d.Manifests[i].Platform.Architecture)
		}
		m := registryManifest(t, reg.host, "nixoci/multi", e.Digest.String())
		if digest.FromBytes(m) != e.Digest {
			t.Errorf("registry manifest %s has digest %s", e.Digest, digest.FromBytes(m))
		}
	}
	if !strings.Contains(report.String(), fmt.Sprintf("manifest %s: written to %s", digest.FromBytes(want), dest)) {
		t.Errorf("report lacks the index line:\n%s", report.String())
	}

	reg.seen()
	report.Reset()
	if err := Copy(ctx, "nix:"+file, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), Progress: &report}); err != nil {
		t.Fatalf("repush Copy() = %v", err)
	}
	r := reg.seen()
	t.Logf("repush of the index: %d requests: %v", len(r), r)
	if len(r) > 3 {
		t.Errorf("repush of the index made %d requests, want at most 3: %v", len(r), r)
	}
	if !strings.Contains(report.String(), "nothing copied") {
		t.Errorf("repush report:\n%s", report.String())
	}

	// Pulled back into an OCI layout, it is still the whole index.
	layout := filepath.Join(t.TempDir(), "pulled")
	if err := Copy(ctx, "nix:"+file, "oci:"+layout+":v1", Options{}); err != nil {
		t.Fatalf("Copy(oci) = %v", err)
	}
	var top ocispec.Index
	if err := json.Unmarshal(readFile(t, filepath.Join(layout, "index.json")), &top); err != nil || len(top.Manifests) != 1 {
		t.Fatalf("layout index.json: %v, %+v", err, top)
	}
	if top.Manifests[0].Digest != digest.FromBytes(want) || top.Manifests[0].MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("layout names %s (%s), want the index %s", top.Manifests[0].Digest, top.Manifests[0].MediaType, digest.FromBytes(want))
	}
	for _, e := range idx.Manifests {
		if _, err := os.Stat(filepath.Join(layout, "blobs", "sha256", e.Digest.Encoded())); err != nil {
			t.Errorf("layout lacks image %s: %v", e.Digest, err)
		}
	}
}

// TestCopyIndexPicksHostPlatform copies an index into destinations that
// hold one image: each gets the image of this machine's architecture.
func TestCopyIndexPicksHostPlatform(t *testing.T) {
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	file, d := writeIndex(t, other, runtime.GOARCH)
	var hostConfig digest.Digest
	for _, e := range d.Manifests {
		if e.Platform.Architecture == runtime.GOARCH {
			img, err := image.Load(context.Background(), e.ImagePath(file))
			if err != nil {
				t.Fatal(err)
			}
			config, err := image.Config(image.Uncompressed(img))
			if err != nil {
				t.Fatal(err)
			}
			hostConfig = digest.FromBytes(config)
		}
	}

	t.Run("docker-archive", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "image.tar")
		if err := Copy(testContext(t), "nix:"+file, "docker-archive:"+archive+":nixoci/multi:v1", Options{}); err != nil {
			t.Fatalf("Copy() = %v", err)
		}
		out, err := exec.Command("tar", "-tf", archive).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), hostConfig.Encoded()+".json") {
			t.Errorf("archive lacks the host image's config %s:\n%s", hostConfig, out)
		}
	})
	t.Run("containers-storage", func(t *testing.T) {
		root, runroot := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "run")
		t.Cleanup(func() { shutdownStore(root, runroot) })
		dest := fmt.Sprintf("containers-storage:[vfs@%s+%s]nixoci-test/multi:v1", root, runroot)
		if err := Copy(testContext(t), "nix:"+file, dest, Options{BlobInfoCacheDir: t.TempDir()}); err != nil {
			t.Fatalf("Copy() = %v", err)
		}
		var again bytes.Buffer
		if err := Copy(testContext(t), "nix:"+file, dest, Options{BlobInfoCacheDir: t.TempDir(), Progress: &again}); err != nil {
			t.Fatalf("second Copy() = %v", err)
		}
		if !strings.Contains(again.String(), "nothing copied") {
			t.Errorf("second copy of the index into containers-storage:\n%s", again.String())
		}
		store, err := storage.GetStore(storagetypes.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: "vfs"})
		if err != nil {
			t.Fatal(err)
		}
		si, err := store.Image("docker.io/nixoci-test/multi:v1")
		if err != nil {
			t.Fatalf("image in store: %v", err)
		}
		if si.ID != hostConfig.Encoded() {
			t.Errorf("stored image ID = %s, want the host image's config %s", si.ID, hostConfig.Encoded())
		}
	})
	t.Run("docker-daemon", func(t *testing.T) {
		needDocker(t)
		tag := fmt.Sprintf("nixoci-test/multi:%d", time.Now().UnixNano())
		t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
		if err := Copy(testContext(t), "nix:"+file, "docker-daemon:"+tag, Options{}); err != nil {
			t.Fatalf("Copy() = %v", err)
		}
		out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}} {{.Architecture}}", tag).CombinedOutput()
		if err != nil {
			t.Fatalf("docker image inspect: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), hostConfig.String()+" "+runtime.GOARCH; got != want {
			t.Errorf("daemon image = %s, want %s", got, want)
		}
		var again bytes.Buffer
		if err := Copy(testContext(t), "nix:"+file, "docker-daemon:"+tag, Options{Progress: &again}); err != nil {
			t.Fatalf("second Copy() = %v", err)
		}
		if !strings.Contains(again.String(), "nothing sent") {
			t.Errorf("second load of the index:\n%s", again.String())
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
