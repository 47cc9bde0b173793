package nix

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// indexArgs are the arguments of the index test file: the registry port
// and an architecture that is not this machine's.
const indexArgs = `port, other`

const indexLets = `
  reg = "127.0.0.1:${port}";
  # A root whose /etc/platform names arch; its busybox is this machine's,
  # so only the host image runs and the other stands in for a cross-built
  # one.
  standIn = arch: mk "stand-in-${arch}" ''
    mkdir -p $out/bin $out/etc
    ln -s ${bb}/bin/busybox $out/bin/cat
    echo platform ${arch} > $out/etc/platform
  '';
  # The same buildImage for two platforms, as a flake does it for several
  # pkgs: arch left to the default (this machine) or set.
  app = arch: nixoci.buildImage ({
    name = "${reg}/app-${arch}";
    tag = "v1";
    copyToRoot = standIn arch;
    config.Cmd = [ "/bin/cat" "/etc/platform" ];
  } // (if arch == "host" then { } else { inherit arch; }));
`

const indexAttrs = `
  multi = nixoci.buildImageIndex {
    name = "${reg}/Multi";
    tag = "v1";
    images = [ (app "host") (app other) ];
  };
  untagged = nixoci.buildImageIndex { name = "${reg}/untagged"; images = [ (app "host") ]; };
`

// TestBuildImageIndex builds an index of this machine's image and a
// stand-in for another architecture with the Nix library, runs its copy
// scripts, and checks what the registry, Docker and Podman got.
func TestBuildImageIndex(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireDocker(t)
	testenv.RequireTools(t, "skopeo", "podman")
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	e.addNixoci(t, dir)
	reg := startRegistry(t)
	port := reg.Addr[strings.LastIndex(reg.Addr, ":")+1:]
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	file := e.writeNix(t, dir, "index.nix", indexArgs, indexLets, indexAttrs)
	args := []string{"--argstr", "port", port, "--argstr", "other", other}

	out := e.build(t, file, "multi", args...)
	var doc struct {
		Nixoci    int
		Name, Tag string
		Manifests []struct {
			Image    string
			Digest   string
			Platform struct{ Architecture, OS string }
		}
	}
	if err := json.Unmarshal(testenv.ReadFile(t, out), &doc); err != nil {
		t.Fatalf("index %s: %v", out, err)
	}
	if doc.Nixoci != 1 || doc.Name != reg.Addr+"/multi" || doc.Tag != "v1" || len(doc.Manifests) != 2 ||
		doc.Manifests[0].Platform.Architecture != runtime.GOARCH || doc.Manifests[1].Platform.Architecture != other {
		t.Fatalf("index %s = %+v, want %s/multi:v1 of %s and %s", out, doc, reg.Addr, runtime.GOARCH, other)
	}
	for _, m := range doc.Manifests {
		if !strings.HasPrefix(m.Image, "/nix/store/") {
			t.Errorf("index entry %s is not a store path", m.Image)
		}
	}
	// The index keeps its images alive: they are in its closure.
	refs := e.Must(t, time.Minute, "nix-store", "--query", "--references", out)
	for _, m := range doc.Manifests {
		if !strings.Contains(refs, m.Image) {
			t.Errorf("index %s does not refer to its image %s:\n%s", out, m.Image, refs)
		}
	}
	ref := reg.Addr + "/multi:v1"
	if got := strings.Trim(strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", append([]string{"--eval", file, "-A", "multi.imageRefUnsafe"}, args...)...)), `"`); got != ref {
		t.Errorf("multi.imageRefUnsafe = %q, want %q", got, ref)
	}

	// copyToRegistry pushes the index and both images.
	e.nixRunArgs(t, file, "multi.copyToRegistry", args, "--dest-tls-verify=false")
	raw := e.Must(t, time.Minute, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	var idx struct {
		MediaType string
		Manifests []struct {
			Digest   string
			Platform struct{ Architecture, OS string }
		}
	}
	if err := json.Unmarshal([]byte(raw), &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("skopeo inspect --raw %s = %v\n%s", ref, err, raw)
	}
	for i, m := range idx.Manifests {
		if m.Digest != doc.Manifests[i].Digest || m.Platform.Architecture != doc.Manifests[i].Platform.Architecture {
			t.Errorf("registry index entry %d = %+v, want %+v", i, m, doc.Manifests[i])
		}
	}
	info := e.Must(t, time.Minute, "skopeo", "inspect", "--tls-verify=false", "--override-arch", other, "docker://"+ref)
	if !strings.Contains(info, fmt.Sprintf(`"Architecture": %q`, other)) {
		t.Errorf("skopeo inspect --override-arch %s:\n%s", other, info)
	}
	// A second copyToRegistry asks for the index and stops.
	repush := e.nixRunArgs(t, file, "multi.copyToRegistry", args, "--dest-tls-verify=false")
	if !strings.Contains(repush, "nothing copied") {
		t.Errorf("second copyToRegistry:\n%s", repush)
	}

	// docker pull of this machine's image from the loopback registry.
	t.Cleanup(func() { e.Run(time.Minute, "docker", "rmi", "-f", ref) })
	e.Must(t, 2*time.Minute, "docker", "pull", ref)
	if got := e.Must(t, time.Minute, "docker", "run", "--rm", "--network", "none", ref); got != "platform host\n" {
		t.Errorf("docker run of the pulled index printed %q, want this machine's image", got)
	}

	// copyToDockerDaemon and copyToPodman load this machine's image.
	e.Run(time.Minute, "docker", "rmi", "-f", ref)
	e.nixRunArgs(t, file, "multi.copyToDockerDaemon", args)
	if got := e.Must(t, time.Minute, "docker", "run", "--rm", "--network", "none", ref); got != "platform host\n" {
		t.Errorf("docker run after copyToDockerDaemon printed %q", got)
	}
	t.Cleanup(func() { e.Run(time.Minute, "podman", "rmi", "-f", ref) })
	e.nixRunArgs(t, file, "multi.copyToPodman", args)
	if arch := strings.TrimSpace(e.Must(t, time.Minute, "podman", "image", "inspect", "--format", "{{.Architecture}}", ref)); arch != runtime.GOARCH {
		t.Errorf("podman image after copyToPodman is for %q, want %s", arch, runtime.GOARCH)
	}

	// copyTo an OCI layout keeps the whole index.
	layout := filepath.Join(t.TempDir(), "layout")
	e.nixRunArgs(t, file, "multi.copyTo", args, "oci:"+layout+":v1")
	var top struct{ Manifests []struct{ MediaType string } }
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(layout, "index.json")), &top); err != nil || len(top.Manifests) != 1 || top.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("layout index.json = %+v, %v; want one entry naming an index", top, err)
	}

	// No tag: the output hash, as buildImage.
	untagged := e.build(t, file, "untagged", args...)
	hash := strings.SplitN(filepath.Base(untagged), "-", 2)[0]
	if got := strings.Trim(strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", append([]string{"--eval", file, "-A", "untagged.imageTag"}, args...)...)), `"`); got != hash {
		t.Errorf("untagged.imageTag = %q, want the output hash %q", got, hash)
	}
	if _, err := os.Stat(untagged); err != nil {
		t.Fatal(err)
	}
}

// TestBuildImageIndexBadInput: wrong arguments fail at evaluation with a
// message naming buildImageIndex and the argument.
func TestBuildImageIndexBadInput(t *testing.T) {
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	lets := indexLets + `
  port = "5000";
  other = "arm64";
`
	for _, tc := range []struct {
		name string
		expr string
		want []string
	}{
		{"no images", `nixoci.buildImageIndex { name = "x"; images = [ ]; }`, []string{"nixoci.buildImageIndex", "images is empty"}},
		{"images not a list", `nixoci.buildImageIndex { name = "x"; images = app "host"; }`, []string{"nixoci.buildImageIndex", "images must be a list"}},
		{"not an image", `nixoci.buildImageIndex { name = "x"; images = [ root ]; }`, []string{"nixoci.buildImageIndex", "images element 0", "nixoci.buildImage", "the derivation root"}},
		{"an index", `nixoci.buildImageIndex { name = "x"; images = [ (nixoci.buildImageIndex { name = "y"; images = [ (app "host") ]; }) ]; }`, []string{"nixoci.buildImageIndex", "images element 0 is an index"}},
		{"one platform twice", `nixoci.buildImageIndex { name = "x"; images = [ (app "arm64") (app "aarch64") ]; }`, []string{"nixoci.buildImageIndex", "two images for linux/arm64", "arch"}},
		{"no name", `nixoci.buildImageIndex { name = ""; images = [ (app "host") ]; }`, []string{"nixoci.buildImageIndex", "name must be a non-empty string"}},
		{"bad tag", `nixoci.buildImageIndex { name = "x"; tag = 1; images = [ (app "host") ]; }`, []string{"nixoci.buildImageIndex", "tag must be"}},
		{"index as fromImage", `nixoci.buildImage { name = "x"; fromImage = nixoci.buildImageIndex { name = "y"; images = [ (app "host") ]; }; }`, []string{"nixoci.buildImage", "fromImage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := e.writeNix(t, t.TempDir(), "bad.nix", "", lets, "drv = "+tc.expr+";")
			r := e.Run(time.Minute, "nix-instantiate", file, "-A", "drv")
			if r.Err == nil {
				t.Fatalf("nix-instantiate of %s succeeded, want an error", tc.expr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("error of %s = %q, want it to contain %q", tc.expr, testenv.Tail(r.Stderr, 10), w)
				}
			}
		})
	}
}
