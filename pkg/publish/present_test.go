package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
	nix "github.com/nixoci/nixoci/transport"
)

// manyLayerImage writes an image of n one-file layers (each differing by
// salt) and returns its directory.
func manyLayerImage(t *testing.T, n int, compression, salt string, cmd ...string) (string, *descriptor.Image) {
	t.Helper()
	var paths []descriptor.Path
	for i := range n {
		paths = append(paths, rooted(tree(t, map[string]string{fmt.Sprintf("l/%03d", i): fmt.Sprintf("layer %d %s\n", i, salt)})))
	}
	dir := filepath.Join(t.TempDir(), "image")
	return dir, writeImage(t, dir, compression, cmd, paths...)
}

// servedManifest is the manifest the nix: source at dir serves a registry.
func servedManifest(t *testing.T, dir string) []byte {
	t.Helper()
	ref, err := nix.ParseReference(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m, _, err := src.GetManifest(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// registryManifest GETs a manifest by tag or digest from the in-process
// registry.
func registryManifest(t *testing.T, host, repo, ref string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest+", "+ocispec.MediaTypeImageIndex)
	// The credentials of the registries with basic auth; others ignore them.
	req.SetBasicAuth("alice", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s/%s = %s: %s", repo, ref, resp.Status, b.String())
	}
	return b.Bytes()
}

// TestRepushChecksManifestFirst pushes a 120-layer image, then pushes it
// again as a fresh machine would (an empty blob-info cache): the registry
// is asked whether the tag names the manifest, and nothing else. Pushed
// under a new tag, it is only tagged. With basic auth the count holds.
func TestRepushChecksManifestFirst(t *testing.T) {
	const layers = 120
	dir, img := manyLayerImage(t, layers, descriptor.Gzip, "repush")
	want := digest.FromBytes(servedManifest(t, dir))
	for _, auth := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "basic auth"}[auth], func(t *testing.T) {
			ctx := testContext(t)
			reg := newRegistry(t)
			opts := Options{DestTLSVerify: boolPtr(false)}
			if auth {
				reg.user, reg.pass = "alice", "secret"
				opts.DestCreds = &Credentials{"alice", "secret"}
			}
			dest := "docker://" + reg.host + "/nixoci/many:v1"
			opts.BlobInfoCacheDir = t.TempDir()
			if err := Copy(ctx, "nix:"+dir, dest, opts); err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			first := reg.seen()
			t.Logf("first push: %d requests", len(first))
			if got := digest.FromBytes(registryManifest(t, reg.host, "nixoci/many", "v1")); got != want {
				t.Fatalf("registry holds manifest %s, want %s", got, want)
			}
			reg.seen()

			var report bytes.Buffer
			opts.BlobInfoCacheDir, opts.Progress = t.TempDir(), &report
			if err := Copy(ctx, "nix:"+dir, dest, opts); err != nil {
				t.Fatalf("repush Copy() = %v", err)
			}
			second := reg.seen()
			t.Logf("repush from an empty cache: %d requests: %v", len(second), second)
			if len(second) > 3 {
				t.Errorf("repush made %d requests, want at most 3: %v", len(second), second)
			}
			for _, r := range second {
				if strings.Contains(r, "/blobs/") || strings.HasPrefix(r, "PUT ") {
					t.Errorf("repush asked for a blob or wrote: %s", r)
				}
			}
			for _, l := range img.Layers {
				if line := fmt.Sprintf("blob %s: skipped: already exists\n", l.Digest); !strings.Contains(report.String(), line) {
					t.Errorf("repush report lacks %q", line)
				}
			}
			if line := fmt.Sprintf("manifest %s: already in %s, nothing copied\n", want, dest); !strings.Contains(report.String(), line) {
				t.Errorf("repush report lacks %q:\n%s", line, report.String())
			}

			// A new tag: the repository has the manifest, only the tag is
			// written.
			report.Reset()
			opts.BlobInfoCacheDir = t.TempDir()
			dest2 := "docker://" + reg.host + "/nixoci/many:v2"
			if err := Copy(ctx, "nix:"+dir, dest2, opts); err != nil {
				t.Fatalf("Copy(new tag) = %v", err)
			}
			third := reg.seen()
			t.Logf("push under a new tag: %d requests: %v", len(third), third)
			puts := 0
			for _, r := range third {
				if strings.Contains(r, "/blobs/") {
					t.Errorf("push under a new tag touched a blob: %s", r)
				}
				if strings.HasPrefix(r, "PUT ") {
					puts++
				}
			}
			if puts != 1 || len(third) > 6 {
				t.Errorf("push under a new tag: %d PUTs in %d requests, want 1 PUT in at most 6", puts, len(third))
			}
			if got := digest.FromBytes(registryManifest(t, reg.host, "nixoci/many", "v2")); got != want {
				t.Errorf("v2 names %s, want %s", got, want)
			}
			if !strings.Contains(report.String(), "tagged "+dest2) {
				t.Errorf("report does not say it tagged:\n%s", report.String())
			}
		})
	}
}

// TestBlobChecksAreParallelAndBounded pushes an image whose layers the
// registry has but whose manifest it lacks (another config): the blob
// checks run in parallel, never more at once than allowed, and nothing is
// uploaded but the config.
func TestBlobChecksAreParallelAndBounded(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	var paths []descriptor.Path
	for i := range 40 {
		paths = append(paths, rooted(tree(t, map[string]string{fmt.Sprintf("f%02d", i): fmt.Sprint(i)})))
	}
	base := filepath.Join(t.TempDir(), "base")
	writeImage(t, base, descriptor.Gzip, []string{"/a"}, paths...)
	dest := "docker://" + reg.host + "/nixoci/par:v1"
	if err := Copy(ctx, "nix:"+base, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	reg.blobHeadDelay = 20 * time.Millisecond
	for i, jobs := range []uint{3, 0} {
		t.Run(fmt.Sprintf("jobs=%d", jobs), func(t *testing.T) {
			other := filepath.Join(t.TempDir(), "other")
			writeImage(t, other, descriptor.Gzip, []string{fmt.Sprintf("/other-%d", i)}, paths...)
			reg.seen()
			reg.mu.Lock()
			reg.maxBlobHeads = 0
			reg.mu.Unlock()
			err := Copy(ctx, "nix:"+other, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), ImageParallelCopies: jobs})
			if err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			requests := reg.seen()
			reg.mu.Lock()
			most := reg.maxBlobHeads
			reg.mu.Unlock()
			limit := int(jobs)
			if jobs == 0 {
				limit = 6 // containers/image's default
			}
			t.Logf("%d requests, at most %d blob checks at once", len(requests), most)
			if most < 2 || most > limit {
				t.Errorf("at most %d blob checks ran at once, want between 2 and %d", most, limit)
			}
			uploads := 0
			for _, r := range requests {
				if strings.HasPrefix(r, "POST ") {
					uploads++
				}
			}
			if uploads != 1 {
				t.Errorf("%d uploads, want 1 (the config): %v", uploads, requests)
			}
		})
	}
}

// TestUncompressedPushedAsDescribed: a --compression none image reaches
// a registry and an OCI layout with the manifest the nix: source serves
// (nothing gzipped on the way), and a fresh machine's repush skips it.
func TestUncompressedPushedAsDescribed(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	dir, img := manyLayerImage(t, 3, descriptor.None, "plain")
	want := servedManifest(t, dir)
	dest := "docker://" + reg.host + "/nixoci/plain:v1"
	if err := Copy(ctx, "nix:"+dir, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	if got := registryManifest(t, reg.host, "nixoci/plain", "v1"); !bytes.Equal(got, want) {
		t.Errorf("registry manifest =\n%s\nwant the served one\n%s", got, want)
	}
	reg.seen()
	if err := Copy(ctx, "nix:"+dir, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("repush Copy() = %v", err)
	}
	if r := reg.seen(); len(r) > 3 {
		t.Errorf("repush made %d requests, want at most 3: %v", len(r), r)
	}

	layoutDir := filepath.Join(t.TempDir(), "layout")
	if err := Copy(ctx, "nix:"+dir, "oci:"+layoutDir+":v1", Options{}); err != nil {
		t.Fatalf("Copy(oci) = %v", err)
	}
	m := readLayout(t, layoutDir)
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayer || l.Digest != img.Layers[i].DiffID {
			t.Errorf("layout layer %d = %s %s, want the plain tar %s", i, l.MediaType, l.Digest, img.Layers[i].DiffID)
		}
	}
}

// TestLayoutManifestFirst copies into an OCI layout twice: the second copy
// finds the manifest under its name in index.json and writes nothing.
// Another name is copied (locally, reusing the blobs).
func TestLayoutManifestFirst(t *testing.T) {
	ctx := testContext(t)
	dir, _ := twoLayerImage(t)
	layoutDir := filepath.Join(t.TempDir(), "layout")
	if err := Copy(ctx, "nix:"+dir, "oci:"+layoutDir+":v1", Options{}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	index := filepath.Join(layoutDir, "index.json")
	before, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	if err := Copy(ctx, "nix:"+dir, "oci:"+layoutDir+":v1", Options{Progress: &report}); err != nil {
		t.Fatalf("second Copy() = %v", err)
	}
	if !strings.Contains(report.String(), "nothing copied") {
		t.Errorf("second copy report does not say it copied nothing:\n%s", report.String())
	}
	after, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("index.json was rewritten by a copy that had nothing to do")
	}
	// A missing blob is not skipped over.
	m := readLayout(t, layoutDir)
	if err := os.Remove(filepath.Join(layoutDir, "blobs", "sha256", m.Layers[1].Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	report.Reset()
	if err := Copy(ctx, "nix:"+dir, "oci:"+layoutDir+":v1", Options{Progress: &report}); err != nil {
		t.Fatalf("Copy() after removing a blob = %v", err)
	}
	if strings.Contains(report.String(), "nothing copied") {
		t.Errorf("a layout missing a blob was skipped:\n%s", report.String())
	}
	readLayout(t, layoutDir)
	if err := Copy(ctx, "nix:"+dir, "oci:"+layoutDir+":v2", Options{}); err != nil {
		t.Fatalf("Copy(v2) = %v", err)
	}
	data, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range idx.Manifests {
		names = append(names, d.Annotations[ocispec.AnnotationRefName])
	}
	if strings.Join(names, " ") != "v1 v2" {
		t.Errorf("layout names = %v, want v1 v2", names)
	}
}

// TestStorageManifestFirst copies into containers-storage twice: the
// second copy finds the image under its name with the same manifest.
func TestStorageManifestFirst(t *testing.T) {
	ctx := testContext(t)
	dir, img := twoLayerImage(t)
	root, runroot := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "run")
	dest := fmt.Sprintf("containers-storage:[vfs@%s+%s]nixoci-test/present:v1", root, runroot)
	t.Cleanup(func() { shutdownStore(root, runroot) })
	if err := Copy(ctx, "nix:"+dir, dest, Options{BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	var report bytes.Buffer
	if err := Copy(ctx, "nix:"+dir, dest, Options{BlobInfoCacheDir: t.TempDir(), Progress: &report}); err != nil {
		t.Fatalf("second Copy() = %v", err)
	}
	if !strings.Contains(report.String(), "nothing copied") {
		t.Errorf("second copy report does not say it copied nothing:\n%s", report.String())
	}
	for _, l := range img.Layers {
		if line := fmt.Sprintf("blob %s: skipped: already exists", l.DiffID); !strings.Contains(report.String(), line) {
			t.Errorf("second copy report lacks %q:\n%s", line, report.String())
		}
	}
}

// TestDaemonManifestFirst loads an image twice: the second time the tag
// names an image with the image's config digest, so nothing is sent.
func TestDaemonManifestFirst(t *testing.T) {
	needDocker(t)
	ctx := testContext(t)
	dir, img := twoLayerImage(t)
	tag := fmt.Sprintf("nixoci-test/present:%d", time.Now().UnixNano())
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	var first, second bytes.Buffer
	if err := Copy(ctx, "nix:"+dir, "docker-daemon:"+tag, Options{Progress: &first}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	if strings.Contains(first.String(), "nothing sent") {
		t.Fatalf("first load says nothing was sent:\n%s", first.String())
	}
	if err := Copy(ctx, "nix:"+dir, "docker-daemon:"+tag, Options{Progress: &second}); err != nil {
		t.Fatalf("second Copy() = %v", err)
	}
	if !strings.Contains(second.String(), "already loaded as "+tag+", nothing sent") {
		t.Errorf("second load report:\n%s\nwant it to say the image is already loaded", second.String())
	}
	for _, l := range img.Layers {
		if line := fmt.Sprintf("layer %s: skipped: already exists", l.DiffID); !strings.Contains(second.String(), line) {
			t.Errorf("second load report lacks %q", line)
		}
	}
}

// TestManifestCheckIsBounded: a registry that does not answer the
// manifest check costs at most the stall timeout; the copy then runs.
func TestManifestCheckIsBounded(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	dir, _ := twoLayerImage(t)
	dest := "docker://" + reg.host + "/nixoci/hang:v1"
	if err := Copy(ctx, "nix:"+dir, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	reg.manifestHeadDelay = time.Minute
	var report bytes.Buffer
	start := time.Now()
	err := Copy(ctx, "nix:"+dir, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), StallTimeout: durationPtr(time.Second), Progress: &report})
	if err != nil {
		t.Fatalf("Copy() past a hanging manifest check = %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the copy took %v past a hanging manifest check, want about the 1s stall timeout", took)
	}
	if !strings.Contains(report.String(), "written to "+dest) {
		t.Errorf("the copy after the check gave up did not write the manifest:\n%s", report.String())
	}
}
