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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// buildTags are the tags every nixoci build uses.
const buildTags = "containers_image_openpgp exclude_graphdriver_btrfs"

// nixConf is the configuration every Nix command of the tests runs with.
const nixConf = `build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
`

// inCI reports whether missing components must fail the tests.
func inCI() bool { return os.Getenv("CI") == "true" }

// missing skips the test outside CI and fails it under CI=true.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("CI=true but %s", msg)
	}
	t.Skipf("skipping: %s (.ci/run sets it up)", msg)
}

// moduleRoot is the repository root (tests/nix is two levels down).
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// nixEnv is a single-user Nix set up for the tests.
type nixEnv struct {
	confDir string
	// busybox is a store path holding bin/busybox (static) and bin/sh.
	busybox string
	// nixoci is a store path holding bin/nixoci, built from this tree
	// (empty in nixEnvs made for evaluation only).
	nixoci string
}

// requireNix checks that single-user Nix can run here.
func requireNix(t *testing.T) {
	t.Helper()
	for _, p := range []string{"nix", "nix-build", "nix-instantiate", "nix-store"} {
		if _, err := exec.LookPath(p); err != nil {
			missing(t, "%s is not installed (Debian package nix-bin)", p)
		}
	}
	if os.Geteuid() != 0 {
		missing(t, "single-user Nix needs root to write /nix")
	}
}

// env returns the environment of a Nix command.
func (e *nixEnv) env() []string {
	return append(os.Environ(), "NIX_CONF_DIR="+e.confDir, "NIX_PATH=")
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

// run runs a command with a time limit and the Nix environment.
func (e *nixEnv) run(timeout time.Duration, dir string, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.env()
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %s: %w", name, timeout, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// must runs a command and fails the test when it fails.
func (e *nixEnv) must(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	r := e.run(timeout, "", name, args...)
	if r.err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), r.err, r.stdout, tail(r.stderr, 60))
	}
	return r.stdout
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newNixEnv writes the Nix configuration and adds busybox to the store.
func newNixEnv(t *testing.T, dir string) *nixEnv {
	t.Helper()
	requireNix(t)
	e := &nixEnv{confDir: filepath.Join(dir, "nix-conf")}
	if err := os.MkdirAll(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.confDir, "nix.conf"), []byte(nixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox is not installed (Debian package busybox-static)")
	}
	if out, err := exec.Command("ldd", bb).CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic") {
		missing(t, "%s is not statically linked (install busybox-static): %s", bb, out)
	}
	bbDir := filepath.Join(dir, "busybox")
	if err := os.MkdirAll(filepath.Join(bbDir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bb, filepath.Join(bbDir, "bin", "busybox"), 0o555)
	if err := os.Symlink("busybox", filepath.Join(bbDir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	e.busybox = strings.TrimSpace(e.must(t, 2*time.Minute, "nix-store", "--add", bbDir))
	return e
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
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
	if _, err := exec.LookPath("go"); err != nil {
		missing(t, "go is not installed")
	}
	pkg := filepath.Join(dir, "nixoci")
	cgoEnv := "CGO_ENABLED=1"
	if !cgo {
		pkg, cgoEnv = filepath.Join(dir, "nixoci-static"), "CGO_ENABLED=0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", buildTags, "-o", filepath.Join(pkg, "bin", "nixoci"), "./cmd/nixoci")
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), cgoEnv)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building nixoci (%s): %v\n%s", cgoEnv, err, out)
	}
	e.nixoci = strings.TrimSpace(e.must(t, 2*time.Minute, "nix-store", "--add", pkg))
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
`, e.busybox, filepath.Join(moduleRoot(), "nix"), nixoci)
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
	out := strings.TrimSpace(e.must(t, 10*time.Minute, "nix-build", args...))
	lines := strings.Split(out, "\n")
	return lines[len(lines)-1]
}

// registry is a docker-registry started by the tests on 127.0.0.1.
type registry struct {
	addr string
	log  string
	cmd  *exec.Cmd
}

// startRegistry starts docker-registry with a temporary config and storage.
func startRegistry(t *testing.T, dir string) *registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		missing(t, "docker-registry is not installed (Debian package docker-registry)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := filepath.Join(dir, "registry.yml")
	text := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "registry-data"), addr)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &registry{addr: addr, log: filepath.Join(dir, "registry.log")}
	logFile, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "serve", conf)
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		logFile.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(r.log)
			t.Fatalf("docker-registry on %s did not come up: %v\n%s", addr, err, tail(string(data), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logSize is the current length of the registry log, to count from.
func (r *registry) logSize(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(r.log)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// uploadRE matches the access-log line of a finished blob upload (the PUT
// that names the digest).
var uploadRE = regexp.MustCompile(`"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256%3A([0-9a-f]{64})[^ ]* HTTP/[0-9.]+" 201`)

// uploads returns the digests of the blobs uploaded since the log had size from.
func (r *registry) uploads(t *testing.T, from int64) []string {
	t.Helper()
	f, err := os.Open(r.log)
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
	out := e.must(t, 2*time.Minute, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)
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
	out := e.must(t, 2*time.Minute, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)
	var info struct{ Digest string }
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	return info.Digest
}

// requireTools fails or skips unless every program is installed.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing(t, "%s is not installed", n)
		}
	}
}

// requireDocker checks that the Docker daemon answers.
func requireDocker(t *testing.T) {
	t.Helper()
	requireTools(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput(); err != nil {
		missing(t, "dockerd is not running: %v: %s", err, tail(string(out), 5))
	}
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
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d imageDoc
	if err := json.Unmarshal(data, &d); err != nil {
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
	r := e.run(5*time.Minute, "", "nix", all...)
	if r.err != nil {
		t.Fatalf("nix %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(all, " "), r.err, r.stdout, tail(r.stderr, 60))
	}
	return r.stdout
}
