package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// otherArch is an architecture that is not this machine's, for stand-in
// images of another platform.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// platformImage builds an image declaring arch whose /etc/platform names
// it and whose entrypoint prints it. Its busybox is this machine's, so
// only the image of this machine's architecture runs; the others stand in
// for cross-built images.
func platformImage(t *testing.T, ctx context.Context, s *store, arch string) builtImage {
	t.Helper()
	dir := t.TempDir()
	plat := filepath.Join(s.Dir, strings.Repeat(string(rune('d'+len(arch)%10)), 32)+"-platform-"+arch)
	testenv.WriteFile(t, filepath.Join(plat, "etc", "platform"), "platform "+arch+"\n", 0o444)
	layers := filepath.Join(dir, "layers.json")
	testenv.Must(t, ctx, nixoci(t), "layers", "-o", layers, "--max-layers", "3",
		"--copy-to-root", s.Root, "--copy-to-root", plat, s.Busybox, s.Root, plat)
	config := writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{
		"Entrypoint": []string{"/bin/busybox", "cat", "/etc/platform"},
	})
	out := filepath.Join(dir, "image.json")
	testenv.Must(t, ctx, nixoci(t), "image", "-o", out, "--name", "multi", "--tag", arch, "--arch", arch, "--config", config, layers)
	img, err := descriptor.LoadImage(out)
	if err != nil {
		t.Fatal(err)
	}
	return builtImage{Path: out, Image: img}
}

// TestIndex writes an index of this machine's image and a stand-in for
// another architecture with `nixoci index`, pushes it to a docker-registry
// and checks it with the tools people use: skopeo sees both platforms and
// picks either, Docker pulls and runs this machine's image, umoci unpacks
// each from an OCI layout, and Docker and Podman get this machine's image
// when nixoci copies the index to them.
func TestIndex(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "umoci")
	testenv.RequireDocker(t)
	ctx := testContext(t, 8*time.Minute)
	s := newStore(t)
	host, other := runtime.GOARCH, otherArch()
	images := map[string]builtImage{host: platformImage(t, ctx, s, host), other: platformImage(t, ctx, s, other)}
	index := filepath.Join(t.TempDir(), "index.json")
	testenv.Must(t, ctx, nixoci(t), "index", "-o", index, "--name", "multi", "--tag", "v1", images[host].Path, images[other].Path)
	doc, err := descriptor.LoadIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Manifests) != 2 || doc.Manifests[0].Platform.Architecture != host || doc.Manifests[1].Platform.Architecture != other {
		t.Fatalf("index %s = %+v, want %s then %s", index, doc.Manifests, host, other)
	}

	// inspect shows the index, and for the daemon the image it gets.
	r := testenv.Must(t, ctx, nixoci(t), "inspect", "nix:"+index)
	for _, want := range []string{"Index:    multi:v1 (2 images)", "linux/" + host, "linux/" + other, images[other].Path} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("nixoci inspect of the index lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = testenv.Must(t, ctx, nixoci(t), "inspect", "--dest", "docker-daemon", "nix:"+index)
	if !strings.Contains(r.Stdout, "docker-daemon gets the image for linux/"+host) {
		t.Errorf("nixoci inspect --dest docker-daemon of the index:\n%s", r.Stdout)
	}
	r = testenv.Must(t, ctx, nixoci(t), "inspect", "--json", "nix:"+index)
	var js struct {
		ManifestDigest string
		Images         []struct{ ManifestDigest string }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &js); err != nil || len(js.Images) != 2 || js.Images[1].ManifestDigest != doc.Manifests[1].Digest.String() {
		t.Errorf("nixoci inspect --json of the index = %v, %s", err, r.Stdout)
	}

	reg := registry(t, ctx)
	ref := reg + "/" + uniqueName(t) + ":v1"
	r = testenv.Must(t, ctx, nixoci(t), "copy", "--dest-tls-verify=false", "nix:"+index, "docker://"+ref)
	t.Logf("push:\n%s", r.Stdout)

	raw := testenv.Must(t, ctx, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	var idx ocispec.Index
	if err := json.Unmarshal([]byte(raw.Stdout), &idx); err != nil {
		t.Fatalf("skopeo inspect --raw: %v\n%s", err, raw.Stdout)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 2 {
		t.Fatalf("registry holds %s with %d manifests, want an OCI index of 2", idx.MediaType, len(idx.Manifests))
	}
	if js.ManifestDigest != digestOf(raw.Stdout) {
		t.Errorf("the registry's index is %s, nixoci inspect shows %s", digestOf(raw.Stdout), js.ManifestDigest)
	}
	for i, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" || m.Platform.Architecture != doc.Manifests[i].Platform.Architecture || m.Digest != doc.Manifests[i].Digest {
			t.Errorf("registry index entry %d = %s %+v, want %s for linux/%s", i, m.Digest, m.Platform, doc.Manifests[i].Digest, doc.Manifests[i].Platform.Architecture)
		}
	}
	for _, arch := range []string{host, other} {
		out := testenv.Must(t, ctx, "skopeo", "inspect", "--tls-verify=false", "--override-arch", arch, "docker://"+ref)
		var info struct{ Architecture, Digest string }
		if err := json.Unmarshal([]byte(out.Stdout), &info); err != nil {
			t.Fatal(err)
		}
		if info.Architecture != arch {
			t.Errorf("skopeo inspect --override-arch %s gives an image for %s", arch, info.Architecture)
		}
	}

	// Docker pulls this machine's image from the loopback registry
	// (dockerd treats 127.0.0.0/8 as insecure by default) and runs it.
	t.Cleanup(func() { testenv.Run(context.Background(), "docker", "rmi", "-f", ref) })
	testenv.Must(t, ctx, "docker", "pull", ref)
	if out := testenv.Must(t, ctx, "docker", "run", "--rm", "--network", "none", ref); out.Stdout != "platform "+host+"\n" {
		t.Errorf("docker run of the pulled index printed %q, want this machine's image", out.Stdout)
	}

	// An OCI layout holds the whole index; skopeo picks a platform from it
	// and umoci unpacks that (umoci 0.4 cannot choose a platform itself:
	// it calls a tag naming an index of two images ambiguous).
	layout := filepath.Join(t.TempDir(), "layout")
	testenv.Must(t, ctx, nixoci(t), "copy", "nix:"+index, "oci:"+layout+":v1")
	for _, arch := range []string{host, other} {
		single := filepath.Join(t.TempDir(), "single")
		testenv.Must(t, ctx, "skopeo", "copy", "--override-arch", arch, "oci:"+layout+":v1", "oci:"+single+":"+arch)
		bundle := filepath.Join(t.TempDir(), "bundle")
		testenv.Must(t, ctx, "umoci", "unpack", "--rootless", "--image", single+":"+arch, bundle)
		got, err := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "platform"))
		if err != nil || string(got) != "platform "+arch+"\n" {
			t.Errorf("umoci unpack of the %s image: /etc/platform = %q, %v", arch, got, err)
		}
	}

	// Destinations of one image get this machine's.
	tag := uniqueName(t) + ":v1"
	t.Cleanup(func() { testenv.Run(context.Background(), "docker", "rmi", "-f", tag) })
	testenv.Must(t, ctx, nixoci(t), "copy", "nix:"+index, "docker-daemon:"+tag)
	if out := testenv.Must(t, ctx, "docker", "run", "--rm", "--network", "none", tag); out.Stdout != "platform "+host+"\n" {
		t.Errorf("docker run of the index loaded into the daemon printed %q, want this machine's image", out.Stdout)
	}
	if testenv.InCI() || commandExists("podman") {
		podmanRef := "localhost/" + tag
		t.Cleanup(func() { testenv.Run(context.Background(), "podman", "rmi", "-f", podmanRef) })
		testenv.Must(t, ctx, nixoci(t), "copy", "nix:"+index, "containers-storage:"+podmanRef)
		out := testenv.Must(t, ctx, "podman", "image", "inspect", "--format", "{{.Architecture}}", podmanRef)
		if strings.TrimSpace(out.Stdout) != host {
			t.Errorf("podman image inspect of the index copied into containers-storage: architecture %q, want %s", out.Stdout, host)
		}
	}
}

// TestIndexErrors: an index of two images of one platform is refused,
// writing nothing, and an index whose image changed says to write it again.
func TestIndexErrors(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	s := newStore(t)
	amd := platformImage(t, ctx, s, runtime.GOARCH)
	out := filepath.Join(t.TempDir(), "index.json")
	r := testenv.Run(ctx, nixoci(t), "index", "-o", out, "--name", "x", amd.Path, amd.Path)
	if r.Err == nil || !strings.Contains(r.Stderr, "both for linux/"+runtime.GOARCH) {
		t.Errorf("nixoci index of one platform twice: %s", r)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused index left %s behind (%v)", out, err)
	}
	testenv.Must(t, ctx, nixoci(t), "index", "-o", out, "--name", "x", amd.Path)
	changed := *amd.Image
	changed.Config.Cmd = []string{"/changed"}
	if err := descriptor.Write(amd.Path, &changed); err != nil {
		t.Fatal(err)
	}
	r = testenv.Run(ctx, nixoci(t), "copy", "nix:"+out, "oci:"+filepath.Join(t.TempDir(), "l"))
	if r.Err == nil || !strings.Contains(r.Stderr, "changed since the index was written") || !strings.Contains(r.Stderr, amd.Path) {
		t.Errorf("copy of an index whose image changed: %s", r)
	}
	r = testenv.Run(ctx, nixoci(t), "verify", "nix:"+out)
	if r.Err == nil || !strings.Contains(r.Stderr, "index descriptor") {
		t.Errorf("verify of an index: %s", r)
	}
}

func commandExists(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// digestOf is the sha256 digest of s.
func digestOf(s string) string {
	return digest.FromString(s).String()
}
