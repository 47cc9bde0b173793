package nix

// End-to-end tests of the nix/ library with real Nix.
//
// What the machine (and .ci/run) must provide:
//   - Debian's nix-bin (Nix 2.8), used single-user as root: no nix-daemon,
//     no nixbld group. These tests write their own nix.conf and point
//     NIX_CONF_DIR at it for every Nix command, with
//     "build-users-group =" (single-user, no build users), "sandbox = false"
//     (builders run nixoci and busybox from outside any sandbox),
//     "substituters =" (no binary cache is reachable) and
//     "experimental-features = nix-command" (for `nix run`, `nix hash`).
//     /etc/nix/nix.conf is therefore not needed, but the tests must run as
//     root, since single-user Nix writes /nix (created on first use).
//   - busybox-static: /bin/busybox, statically linked, is added to the store
//     and makes the images runnable.
//   - docker.io with dockerd running on /var/run/docker.sock (started with
//     `dockerd --bridge=none --iptables=false`), checked with
//     `docker run --network none`.
//   - docker-registry: each run starts its own on a free 127.0.0.1 port with a
//     temporary config and storage, and reads its access log to count
//     uploads; nothing needs to be running beforehand.
//   - skopeo (layer counts) and podman (containers-storage destination).
//   - go, to build cmd/nixoci (cgo on) into a store path.
// Outside CI (CI unset) a missing component skips the tests that need it;
// with CI=true it fails them. Only 127.0.0.1 is contacted.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// nixEnv is a single-user Nix set up for the tests.
type nixEnv struct {
	*testenv.Nix
	// busybox is a store path holding bin/busybox (static) and bin/sh.
	busybox string
	// nixoci is a store path holding bin/nixoci, built from this tree
	// (empty in nixEnvs made for evaluation only).
	nixoci string
}

// newNixEnv writes the Nix configuration and adds busybox to the store.
func newNixEnv(t *testing.T, dir string) *nixEnv {
	t.Helper()
	e := &nixEnv{Nix: testenv.NewNix(t, dir)}
	e.busybox = e.AddBin(t, filepath.Join(dir, "busybox"), "busybox", testenv.StaticBusybox(t), "sh")
	return e
}

// addNixoci builds cmd/nixoci (with cgo, as released) and adds it to the
// store as <path>/bin/nixoci.
func (e *nixEnv) addNixoci(t *testing.T, dir string) {
	t.Helper()
	e.addNixociBuild(t, dir, true)
}

// addNixociBuild builds cmd/nixoci with or without cgo and adds it to the
// store. Without cgo the binary is static, so it also runs in Nix's
// sandbox, where the host's dynamic loader is not visible.
func (e *nixEnv) addNixociBuild(t *testing.T, dir string, cgo bool) {
	t.Helper()
	testenv.RequireTools(t, "go")
	pkg := filepath.Join(dir, "nixoci")
	if !cgo {
		pkg = filepath.Join(dir, "nixoci-static")
	}
	if err := testenv.BuildNixoci(filepath.Join(pkg, "bin", "nixoci"), cgo); err != nil {
		t.Fatal(err)
	}
	e.nixoci = strings.TrimSpace(e.Must(t, 2*time.Minute, "nix-store", "--add", pkg))
}

// prelude is the start of every test Nix file: the library instantiated
// with the binary under test, a shell and Nix from the host, and helpers.
func (e *nixEnv) prelude() string {
	nixoci := e.nixoci
	if nixoci == "" {
		// Evaluation only: any store path will do as the builder.
		nixoci = e.busybox
	}
	return fmt.Sprintf(`
  bb = builtins.storePath %q;
  nixoci = import %q {
    nixoci = builtins.storePath %q;
    runtimeShell = "${bb}/bin/sh";
    nix = "/usr";
  };
  # mk name script: a derivation built by busybox sh.
  mk = name: script: builtins.derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "${bb}/bin/sh";
    args = [ "-c" script ];
  };
  # A root with /bin/<applet> links to busybox and an empty /data.
  root = mk "root" ''
    mkdir -p $out/bin $out/data $out/etc
    for a in sh ls stat cat echo id env; do ln -s ${bb}/bin/busybox $out/bin/$a; done
    echo 'root:x:0:0:root:/:/bin/sh' > $out/etc/passwd
    echo base > $out/etc/marker
  '';
`, e.busybox, filepath.Join(testenv.ModuleRoot(), "nix"), nixoci)
}

// writeNix writes a Nix file `{ args }: let <prelude> <lets> in { <attrs> }`.
func (e *nixEnv) writeNix(t *testing.T, dir, name, args, lets, attrs string) string {
	t.Helper()
	text := fmt.Sprintf("{ %s }:\nlet\n%s\n%s\nin\n{\n%s\n}\n", args, e.prelude(), lets, attrs)
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// build runs nix-build and returns the output path of attr.
func (e *nixEnv) build(t *testing.T, file, attr string, extra ...string) string {
	t.Helper()
	args := append([]string{file, "-A", attr, "--no-out-link"}, extra...)
	out := strings.TrimSpace(e.Must(t, 10*time.Minute, "nix-build", args...))
	lines := strings.Split(out, "\n")
	return lines[len(lines)-1]
}

// startRegistry starts a docker-registry that logs every request, so that
// uploads can count the blobs pushed to it.
func startRegistry(t *testing.T) *testenv.Registry {
	t.Helper()
	return testenv.StartRegistry(t, context.Background(), testenv.RegistryOptions{AccessLog: true})
}

// logSize is the current length of the registry log, to count from.
func logSize(t *testing.T, r *testenv.Registry) int64 {
	t.Helper()
	fi, err := os.Stat(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// uploadRE matches the access-log line of a finished blob upload (the PUT
// that names the digest).
var uploadRE = regexp.MustCompile(`"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256%3A([0-9a-f]{64})[^ ]* HTTP/[0-9.]+" 201`)

// uploads returns the digests of the blobs uploaded to r since its log had
// size from.
func uploads(t *testing.T, r *testenv.Registry, from int64) []string {
	t.Helper()
	f, err := os.Open(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range uploadRE.FindAllStringSubmatch(string(data), -1) {
		out = append(out, "sha256:"+m[1])
	}
	return out
}

// skopeoLayers returns the layer digests skopeo sees for ref in the registry.
func skopeoLayers(t *testing.T, e *nixEnv, ref string) []string {
	t.Helper()
	out := e.Must(t, 2*time.Minute, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)
	var info struct {
		Digest string
		Layers []string
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	return info.Layers
}

// skopeoDigest returns the manifest digest of ref in the registry.
func skopeoDigest(t *testing.T, e *nixEnv, ref string) string {
	t.Helper()
	out := e.Must(t, 2*time.Minute, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)
	var info struct{ Digest string }
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	return info.Digest
}

// imageDoc is the part of an image descriptor the tests read.
type imageDoc struct {
	Name   string `json:"name"`
	Tag    string `json:"tag"`
	Layers []struct {
		Digest string `json:"digest"`
		DiffID string `json:"diffID"`
		Blob   string `json:"blob"`
		Tar    string `json:"tar"`
		Paths  []struct {
			Path    string          `json:"path"`
			Rewrite json.RawMessage `json:"rewrite"`
		} `json:"paths"`
	} `json:"layers"`
}

func loadImageDoc(t *testing.T, file string) imageDoc {
	t.Helper()
	var d imageDoc
	if err := json.Unmarshal(testenv.ReadFile(t, file), &d); err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	return d
}

// nixRunArgs runs `nix run -f file attr NIXARGS... -- args...`, as a user
// would, and returns what the program printed on stdout.
func (e *nixEnv) nixRunArgs(t *testing.T, file, attr string, nixArgs []string, args ...string) string {
	t.Helper()
	all := append(append([]string{"run", "-f", file, attr}, nixArgs...), "--")
	all = append(all, args...)
	r := e.Run(5*time.Minute, "nix", all...)
	if r.Err != nil {
		t.Fatalf("nix %s failed:\n%s", strings.Join(all, " "), r)
	}
	return r.Stdout
}
