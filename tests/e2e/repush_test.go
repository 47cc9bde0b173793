package e2e

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// doneBytes sums the "done (N bytes)" lines of a copy report: the blob
// bytes sent.
func doneBytes(report string) (blobs int, bytes int64) {
	for _, m := range regexp.MustCompile(`(?m)^(?:blob|config) sha256:[0-9a-f]{64}: done.*\((\d+) bytes\)$`).FindAllStringSubmatch(report, -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		blobs++
		bytes += n
	}
	return blobs, bytes
}

// TestRepushRequests pushes an image to Debian's docker-registry and
// again: the repush makes at most 3 requests and sends nothing. Each
// push goes through its own loopback proxy address, which the blob-info
// cache has never seen, so every push is a fresh machine's.
func TestRepushRequests(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	img := buildImage(t, ctx, newStore(t))
	reg := registry(t, ctx)
	name := uniqueName(t)
	first, addr := testenv.StartFaultProxy(t, reg)
	copyImage(t, ctx, img, "docker://"+addr+"/"+name+":v1", "--dest-tls-verify=false")
	t.Logf("first push: %d requests", len(first.Requests()))

	again, addr := testenv.StartFaultProxy(t, reg)
	r := copyImage(t, ctx, img, "docker://"+addr+"/"+name+":v1", "--dest-tls-verify=false")
	reqs := again.Requests()
	t.Logf("repush: %d requests: %+v\n%s", len(reqs), reqs, r.Stdout)
	if len(reqs) > 3 {
		t.Errorf("repush made %d requests, want at most 3: %+v", len(reqs), reqs)
	}
	if n := again.Count("", testenv.Blobs) + again.Count("", testenv.BlobUploads); n != 0 {
		t.Errorf("repush made %d blob requests, want none", n)
	}
	if !strings.Contains(r.Stdout, "nothing copied") || skippedLayers(img, r) != len(img.Image.Layers) {
		t.Errorf("repush report does not say every layer was skipped:\n%s", r.Stdout)
	}
}

// TestMountFrom pushes a service image, then a second service sharing its
// base layers into another repository of Debian's docker-registry, without
// and with --mount-from, and compares what was uploaded.
func TestMountFrom(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	base := buildImage(t, ctx, s)
	// The second service: the same layers and one of its own.
	app := filepath.Join(s.Dir, "4e1z9h6lfof7o5h0s6z5r1b7xn8p40ee-second-service")
	testenv.WriteFile(t, filepath.Join(app, "share", "second.txt"), "the second service\n", 0o444)
	dir := t.TempDir()
	baseLayers := filepath.Join(dir, "base.json")
	ownLayers := filepath.Join(dir, "own.json")
	testenv.Must(t, ctx, nixoci(t), "layers", "-o", baseLayers, "--max-layers", "3", "--copy-to-root", s.Root, s.Busybox, s.Root, s.Data)
	testenv.Must(t, ctx, nixoci(t), "layers", "-o", ownLayers, "--exclude-layers", baseLayers, app)
	out := filepath.Join(dir, "image.json")
	testenv.Must(t, ctx, nixoci(t), "image", "-o", out, "--name", "second", baseLayers, ownLayers)
	second := builtImage{Path: out}

	reg := registry(t, ctx)
	team := uniqueName(t)
	_, addr := testenv.StartFaultProxy(t, reg)
	copyImage(t, ctx, base, "docker://"+addr+"/"+team+"/first:v1", "--dest-tls-verify=false")

	push := func(repo string, flags ...string) (blobs int, bytes int64, mounts, uploads int) {
		t.Helper()
		p, addr := testenv.StartFaultProxy(t, reg)
		start := time.Now()
		r := copyImage(t, ctx, second, "docker://"+addr+"/"+team+"/"+repo+":v1", append([]string{"--dest-tls-verify=false"}, flags...)...)
		blobs, bytes = doneBytes(r.Stdout)
		uploads = p.Count(http.MethodPut, testenv.BlobUploads)
		mounts = p.Count(http.MethodPost, testenv.BlobUploads) - uploads
		t.Logf("push to %s %v: %d blobs, %d bytes sent, %d uploads, %d mounts, %d requests, %v\n%s", repo, flags, blobs, bytes, uploads, mounts, len(p.Requests()), time.Since(start).Round(time.Millisecond), r.Stdout)
		return blobs, bytes, mounts, uploads
	}
	_, plainBytes, plainMounts, plainUploads := push("second-plain")
	_, mountBytes, mounts, mountUploads := push("second", "--mount-from", team+"/first")
	if plainMounts != 0 || plainUploads != len(base.Image.Layers)+2 {
		t.Errorf("without --mount-from: %d uploads and %d mounts, want %d uploads (every layer and the config) and no mount", plainUploads, plainMounts, len(base.Image.Layers)+2)
	}
	if mounts != len(base.Image.Layers) || mountUploads != 2 {
		t.Errorf("with --mount-from: %d mounts and %d uploads, want %d mounts and 2 uploads (the new layer and the config)", mounts, mountUploads, len(base.Image.Layers))
	}
	if mountBytes*10 > plainBytes {
		t.Errorf("with --mount-from %d bytes were sent, without %d: want a tenth at most", mountBytes, plainBytes)
	}
	// The mounted image is whole: pull it back.
	testenv.Must(t, ctx, "skopeo", "copy", "--src-tls-verify=false", "docker://"+reg+"/"+team+"/second:v1", "oci:"+filepath.Join(t.TempDir(), "pulled"))
}
