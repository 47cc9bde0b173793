package nix

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nixoci/nixoci/tests/testenv"
)

// imagesNix are the test images. Arguments: port of the registry, variant
// (changes one file of one store path), the digest and hash of the base
// image for pullImage, and the manifest file for pullImageFromManifest.
const imagesArgs = `port, variant ? "a", baseDigest ? "sha256:0000000000000000000000000000000000000000000000000000000000000000", baseHash ? "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", manifest ? null`

const imagesLets = `
  reg = "127.0.0.1:${port}";
  # A store path with one file; leaf 3's content follows variant.
  leaf = i: mk "leaf-${toString i}" "mkdir $out; echo leaf ${toString i} ${if i == 3 then variant else ""} > $out/file";
  leafEnv = n: builtins.genList (i: "LEAF${toString (i + 1)}=${leaf (i + 1)}") n;
  l1 = nixoci.buildLayer { deps = [ bb ]; metadata.created_by = "test layer 1"; };
  l2 = nixoci.buildLayer { deps = [ (leaf 1) bb ]; layers = [ l1 ]; reproducible = false; };
  l3 = nixoci.buildLayer { deps = [ (leaf 1) ]; copyToRoot = root; layers = [ l2 ]; };
  derivedRoot = mk "derived-root" "mkdir -p $out/etc; echo derived > $out/etc/derived";
  pulled = nixoci.pullImage {
    imageName = "${reg}/basic";
    imageDigest = baseDigest;
    sha256 = baseHash;
    tlsVerify = false;
    finalImageName = "${reg}/basic";
    finalImageTag = "v1";
  };
  fromManifest = nixoci.pullImageFromManifest {
    imageName = "basic";
    registryUrl = reg;
    imageTag = "v1";
    imageManifest = if manifest == null then null else /. + manifest;
    tlsVerify = false;
  };
`

const imagesAttrs = `
  basic = nixoci.buildImage {
    name = "${reg}/basic";
    tag = "v1";
    copyToRoot = root;
    config.Cmd = [ "/bin/sh" "-c" "echo hello from nixoci; cat /etc/marker" ];
  };
  repro = nixoci.buildImage {
    name = "${reg}/repro";
    copyToRoot = root;
    config.Cmd = [ "/bin/sh" "-c" "echo hello from nixoci" ];
  };
  layered = nixoci.buildImage {
    name = "${reg}/Layered";
    maxLayers = 10;
    copyToRoot = root;
    config = {
      Cmd = [ "/bin/sh" "-c" "cat $LEAF1/file $LEAF12/file" ];
      Env = leafEnv 12;
    };
  };
  leaves = nixoci.buildImage {
    name = "${reg}/leaves";
    tag = "v1";
    maxLayers = 10;
    copyToRoot = root;
    config = {
      Cmd = [ "/bin/sh" "-c" "cat $LEAF3/file" ];
      Env = leafEnv 5;
    };
  };
  chain = nixoci.buildImage {
    name = "${reg}/chain";
    layers = [ l3 ];
    config.Cmd = [ "/bin/sh" "-c" "cat ${leaf 1}/file" ];
  };
  perms = nixoci.buildImage {
    name = "${reg}/perms";
    copyToRoot = root;
    perms = [ { path = root; regex = "^${root}/data$"; mode = "0700"; uid = 1000; gid = 1000; } ];
    config.Cmd = [ "/bin/stat" "-c" "%u %g %a %F" "/data" ];
  };
  nixdb = nixoci.buildImage {
    name = "${reg}/nixdb";
    copyToRoot = root;
    initializeNixDatabase = true;
    nixUid = 1000;
    nixGid = 1000;
    config.Cmd = [ "/bin/sh" "-c" "cat ${leaf 1}/file; stat -c '%u %g' /nix/store /nix/var/nix/db/db.sqlite" ];
  };
  derived = nixoci.buildImage {
    name = "${reg}/derived";
    fromImage = pulled;
    copyToRoot = derivedRoot;
    config.Cmd = [ "/bin/sh" "-c" "cat /etc/marker /etc/derived" ];
  };
  derivedFromManifest = nixoci.buildImage {
    name = "${reg}/derived-from-manifest";
    fromImage = fromManifest;
    copyToRoot = derivedRoot;
    config.Env = [ "WHO=manifest" ];
  };
  inherit pulled fromManifest;
`

// shipped is an image built and copied to every destination.
type shipped struct {
	file string // image descriptor
	doc  imageDoc
	ref  string // name:tag
}

// imageTest builds and ships one image, then checks it.
type imageTest struct {
	attr   string
	output string // what `docker run` prints
	layers int    // layer count in the registry
	check  func(t *testing.T, s shipped)
}

func TestImages(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireDocker(t)
	testenv.RequireTools(t, "skopeo", "podman")
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	e.addNixoci(t, dir)
	reg := startRegistry(t)
	port := reg.Addr[strings.LastIndex(reg.Addr, ":")+1:]
	file := e.writeNix(t, dir, "images.nix", imagesArgs, imagesLets, imagesAttrs)
	portArgs := []string{"--argstr", "port", port}

	ship := func(t *testing.T, attr string, args []string) shipped {
		t.Helper()
		out := e.build(t, file, attr, args...)
		s := shipped{file: out, doc: loadImageDoc(t, out)}
		tag := s.doc.Tag
		if tag == "" {
			// No tag given: the library's passthru tags the image with
			// the output's hash, and the descriptor records none.
			tag = strings.SplitN(filepath.Base(out), "-", 2)[0]
		}
		s.ref = s.doc.Name + ":" + tag
		refUnsafe := e.Must(t, time.Minute, "nix-instantiate", append([]string{"--eval", file, "-A", attr + ".imageRefUnsafe"}, args...)...)
		if got := strings.Trim(strings.TrimSpace(refUnsafe), `"`); got != s.ref {
			t.Errorf("%s.imageRefUnsafe = %q, want %q (name:tag of %s)", attr, got, s.ref, out)
		}
		e.nixRunArgs(t, file, attr+".copyToRegistry", args, "--dest-tls-verify=false")
		e.nixRunArgs(t, file, attr+".copyToDockerDaemon", args)
		e.nixRunArgs(t, file, attr+".copyToPodman", args)
		t.Cleanup(func() {
			e.Run(time.Minute, "docker", "rmi", "-f", s.ref)
			e.Run(time.Minute, "podman", "rmi", "-f", s.ref)
		})
		return s
	}

	checkShipped := func(t *testing.T, tc imageTest, s shipped) {
		t.Helper()
		if tc.output != "" {
			got := e.Must(t, 2*time.Minute, "docker", "run", "--rm", "--network", "none", s.ref)
			if got != tc.output {
				t.Errorf("docker run %s printed %q, want %q", s.ref, got, tc.output)
			}
		}
		if n := len(skopeoLayers(t, e, s.ref)); n != tc.layers {
			t.Errorf("skopeo inspect %s: %d layers, want %d", s.ref, n, tc.layers)
		}
		if n := len(s.doc.Layers); n != tc.layers {
			t.Errorf("descriptor %s: %d layers, want %d", s.file, n, tc.layers)
		}
		podman := strings.TrimSpace(e.Must(t, time.Minute, "podman", "image", "inspect", "--format", "{{len .RootFS.Layers}}", s.ref))
		if podman != strconv.Itoa(tc.layers) {
			t.Errorf("podman image inspect %s: %s layers, want %d", s.ref, podman, tc.layers)
		}
	}

	tests := []imageTest{
		{attr: "basic", output: "hello from nixoci\nbase\n", layers: 1},
		{attr: "layered", output: "leaf 1\nleaf 12\n", layers: 10},
		{attr: "chain", output: "leaf 1\n", layers: 3, check: checkChain},
		{attr: "perms", output: "1000 1000 700 directory\n", layers: 1},
		{attr: "nixdb", output: "leaf 1\n1000 1000\n1000 1000\n", layers: 2, check: func(t *testing.T, s shipped) {
			layout := filepath.Join(t.TempDir(), "layout")
			// copyTo takes the destination first.
			e.nixRunArgs(t, file, "nixdb.copyTo", portArgs, "dir:"+layout)
			checkNixDB(t, e, s, layout)
			// The database is written reproducibly: a rebuild gives the same bytes.
			e.build(t, file, "nixdb", slices.Concat(portArgs, []string{"--check"})...)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.attr, func(t *testing.T) {
			s := ship(t, tc.attr, portArgs)
			checkShipped(t, tc, s)
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}

	pushBase := func(t *testing.T) {
		t.Helper()
		e.nixRunArgs(t, file, "basic.copyToRegistry", portArgs, "--dest-tls-verify=false")
	}

	t.Run("pullImage", func(t *testing.T) {
		pushBase(t)
		digest := skopeoDigest(t, e, reg.Addr+"/basic:v1")
		args := slices.Concat(portArgs, []string{"--argstr", "baseDigest", digest})
		// A wrong hash first, as a user learns the right one.
		r := e.Run(10*time.Minute, "nix-build", append([]string{file, "-A", "pulled", "--no-out-link"}, args...)...)
		m := regexp.MustCompile(`got:\s+(sha256-[A-Za-z0-9+/=]+)`).FindStringSubmatch(r.Stderr)
		if r.Err == nil || m == nil {
			t.Fatalf("nix-build pulled with a wrong hash: err %v, want a hash mismatch naming the right hash; stderr:\n%s", r.Err, testenv.Tail(r.Stderr, 30))
		}
		args = append(args, "--argstr", "baseHash", m[1])
		pulled := e.build(t, file, "pulled", args...)
		if doc := loadImageDoc(t, pulled); len(doc.Layers) != 1 || doc.Layers[0].Blob == "" {
			t.Errorf("pulled descriptor %s: %d layers, want 1 served from a stored blob", pulled, len(doc.Layers))
		}
		s := ship(t, "derived", args)
		checkShipped(t, imageTest{output: "base\nderived\n", layers: 2}, s)
	})

	t.Run("pullImageFromManifest", func(t *testing.T) {
		pushBase(t)
		manifest := e.nixRunArgs(t, file, "fromManifest.getManifest", portArgs)
		var m struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		if err := json.Unmarshal([]byte(manifest), &m); err != nil || len(m.Layers) != 1 {
			t.Fatalf("getManifest printed %q: want a manifest with 1 layer (%v)", manifest, err)
		}
		mf := filepath.Join(dir, "manifest.json")
		if err := os.WriteFile(mf, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		args := slices.Concat(portArgs, []string{"--argstr", "manifest", mf})
		s := ship(t, "derivedFromManifest", args)
		// The base config's Cmd is kept; Env is added.
		checkShipped(t, imageTest{output: "hello from nixoci\nbase\n", layers: 2}, s)
		if !strings.Contains(string(testenv.ReadFile(t, s.file)), m.Layers[0].Digest) {
			t.Errorf("descriptor %s does not hold the base layer %s", s.file, m.Layers[0].Digest)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		first := e.build(t, file, "repro", portArgs...)
		bytes1 := testenv.ReadFile(t, first)
		e.build(t, file, "repro", slices.Concat(portArgs, []string{"--check"})...)
		e.Must(t, time.Minute, "nix-store", "--delete", first)
		second := e.build(t, file, "repro", portArgs...)
		if second != first {
			t.Errorf("rebuilt image = %s, want %s", second, first)
		}
		if b := testenv.ReadFile(t, second); string(b) != string(bytes1) {
			t.Errorf("rebuilt %s differs from the first build:\n%s\nwant\n%s", second, b, bytes1)
		}
	})

	t.Run("oneChangedPath", func(t *testing.T) {
		a := ship(t, "leaves", portArgs)
		checkShipped(t, imageTest{output: "leaf 3 a\n", layers: 7}, a)
		from := logSize(t, reg)
		bArgs := slices.Concat(portArgs, []string{"--argstr", "variant", "b"})
		bFile := e.build(t, file, "leaves", bArgs...)
		b := loadImageDoc(t, bFile)
		oldOnly, newOnly := diffLayers(a.doc, b)
		if len(oldOnly) != 1 || len(newOnly) != 1 {
			t.Fatalf("after changing one file of leaf 3: layers only in the old image %v, only in the new %v; want one each", oldOnly, newOnly)
		}
		changed := layerPaths(b, newOnly[0])
		if len(changed) != 1 || !strings.HasSuffix(changed[0], "-leaf-3") {
			t.Errorf("the changed layer holds %v, want only leaf-3", changed)
		}
		e.nixRunArgs(t, file, "leaves.copyToRegistry", bArgs, "--dest-tls-verify=false")
		ups := uploads(t, reg, from)
		// The new layer and the new config, nothing else.
		if len(ups) != 2 || (ups[0] != newOnly[0] && ups[1] != newOnly[0]) {
			t.Errorf("copyToRegistry after the change uploaded %v, want the changed layer %s and the config only", ups, newOnly[0])
		}
		if got := skopeoLayers(t, e, reg.Addr+"/leaves:v1"); len(got) != 7 || !contains(got, newOnly[0]) || contains(got, oldOnly[0]) {
			t.Errorf("registry now has layers %v, want 7 with %s instead of %s", got, newOnly[0], oldOnly[0])
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// diffLayers returns the layer digests only in a and only in b.
func diffLayers(a, b imageDoc) (onlyA, onlyB []string) {
	in := func(d imageDoc) map[string]bool {
		m := map[string]bool{}
		for _, l := range d.Layers {
			m[l.Digest] = true
		}
		return m
	}
	ia, ib := in(a), in(b)
	for _, l := range a.Layers {
		if !ib[l.Digest] {
			onlyA = append(onlyA, l.Digest)
		}
	}
	for _, l := range b.Layers {
		if !ia[l.Digest] {
			onlyB = append(onlyB, l.Digest)
		}
	}
	return onlyA, onlyB
}

// layerPaths returns the store paths of the layer with digest d.
func layerPaths(doc imageDoc, d string) []string {
	var out []string
	for _, l := range doc.Layers {
		if l.Digest == d {
			for _, p := range l.Paths {
				out = append(out, p.Path)
			}
		}
	}
	return out
}

// checkChain checks that no store path is written twice in the chain
// l1 (busybox), l2 (leaf 1, busybox; a stored tar), l3 (leaf 1, root).
func checkChain(t *testing.T, s shipped) {
	if len(s.doc.Layers) != 3 {
		t.Fatalf("chain image has %d layers, want 3", len(s.doc.Layers))
	}
	var first []string
	for _, p := range s.doc.Layers[0].Paths {
		first = append(first, p.Path)
	}
	if len(first) != 1 || !strings.HasSuffix(first[0], "-busybox") {
		t.Errorf("layer 1 holds %v, want busybox only", first)
	}
	if s.doc.Layers[1].Tar == "" {
		t.Errorf("layer 2 (reproducible = false) has no stored tar")
	}
	for _, p := range s.doc.Layers[2].Paths {
		if len(p.Rewrite) == 0 || string(p.Rewrite) == "null" {
			t.Errorf("layer 3 writes %s to the store again; only the relocated root belongs there", p.Path)
		}
	}
}

// checkNixDB extracts the layers of the image's dir: layout and checks the
// Nix database it holds with Nix itself: valid, registering exactly the
// store paths present, not the copyToRoot path relocated to /, with GC roots.
func checkNixDB(t *testing.T, e *nixEnv, s shipped, layout string) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	extractImage(t, layout, rootfs)
	store := "local?root=" + rootfs
	verify := e.Run(2*time.Minute, "nix-store", "--store", store, "--verify", "--check-contents")
	if verify.Err != nil || strings.Contains(verify.Stderr, "modified") || strings.Contains(verify.Stderr, "invalid") {
		t.Errorf("nix-store --store %s --verify --check-contents: %v\n%s", store, verify.Err, verify.Stderr)
	}
	var infos []struct {
		Path       string
		References []string
	}
	out := e.Must(t, 2*time.Minute, "nix", "--store", store, "path-info", "--all", "--json")
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("nix path-info --all --json: %v\n%s", err, out)
	}
	var registered []string
	for _, i := range infos {
		registered = append(registered, i.Path)
	}
	sort.Strings(registered)
	present := storeDirs(t, rootfs)
	if strings.Join(registered, " ") != strings.Join(present, " ") {
		t.Errorf("the database registers %v, but the image holds %v under /nix/store", registered, present)
	}
	for _, l := range s.doc.Layers {
		for _, p := range l.Paths {
			if strings.HasSuffix(p.Path, "-root") && contains(registered, p.Path) {
				t.Errorf("copyToRoot path %s is registered, but it is relocated to / and not in the image's store", p.Path)
			}
		}
	}
	if len(registered) != 2 {
		t.Errorf("registered %v, want busybox and leaf 1", registered)
	}
	roots, err := os.ReadDir(filepath.Join(rootfs, "nix", "var", "nix", "gcroots", "docker"))
	if err != nil || len(roots) == 0 {
		t.Fatalf("no GC roots in the image: %v", err)
	}
	for _, r := range roots {
		target, err := os.Readlink(filepath.Join(rootfs, "nix", "var", "nix", "gcroots", "docker", r.Name()))
		if err != nil || !contains(registered, target) {
			t.Errorf("GC root %s points to %q (%v), want a registered path", r.Name(), target, err)
		}
	}
}

// extractImage unpacks the layers of a dir: layout into root, in order.
func extractImage(t *testing.T, layout, root string) {
	t.Helper()
	var m struct {
		Layers []struct {
			MediaType string
			Digest    string
		}
	}
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(layout, "manifest.json")), &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		blob := filepath.Join(layout, strings.TrimPrefix(l.Digest, "sha256:"))
		if err := extractLayer(blob, strings.HasSuffix(l.MediaType, "gzip"), root); err != nil {
			t.Fatalf("extracting layer %s: %v", l.Digest, err)
		}
	}
}

func extractLayer(blob string, gzipped bool, root string) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if gzipped {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		dst := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(dst, os.FileMode(h.Mode).Perm()|0o200); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			os.Remove(dst)
			out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode).Perm()|0o200)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			os.Remove(dst)
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
	}
}

// storeDirs lists the store path names under root/nix/store.
func storeDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "nix", "store"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, "/nix/store/"+e.Name())
		}
	}
	sort.Strings(out)
	return out
}
