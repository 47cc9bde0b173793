package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// buildTags are the tags every nixoci build uses.
const buildTags = "containers_image_openpgp exclude_graphdriver_btrfs"

// hello is what the test images' entrypoint prints.
const hello = "hello from nixoci"

// binDir holds the nixoci binary built once for the whole test run.
var binDir string

// buildOnce builds ./cmd/nixoci into binDir the first time a test needs it.
// NIXOCI_E2E_BINARY names a prebuilt binary to test instead.
var buildOnce = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("NIXOCI_E2E_BINARY"); bin != "" {
		return bin, nil
	}
	out := filepath.Join(binDir, "nixoci")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", buildTags, "-o", out, "./cmd/nixoci")
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building nixoci: %w\n%s", err, b)
	}
	return out, nil
})

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nixoci-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot is the repository root (tests/e2e is two levels down).
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// inCI reports whether missing components must fail the test instead of skipping it.
func inCI() bool { return os.Getenv("CI") == "true" }

// missing skips the test outside CI and fails it under CI=true.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("CI=true but %s", msg)
	}
	t.Skipf("skipping: %s (set up by .ci/run)", msg)
}

// requireTools looks up each program on PATH.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing(t, "%s is not installed", n)
		}
	}
}

// requireRoot is for destinations that need root (containers-storage, dockerd).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "not running as root")
	}
}

// requireDocker checks that the docker CLI reaches a running daemon.
func requireDocker(t *testing.T, ctx context.Context) {
	t.Helper()
	requireTools(t, "docker")
	if r := run(ctx, "docker", "version", "--format", "{{.Server.Version}}"); r.err != nil {
		missing(t, "dockerd is not reachable: %v: %s", r.err, r.stderr)
	}
}

// nixoci returns the path of the freshly built binary.
func nixoci(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// testContext is a context bounded by d and by the test's own deadline.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	if dl, ok := t.Deadline(); ok {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		t.Cleanup(c2)
	}
	t.Cleanup(cancel)
	return ctx
}

// result is what a finished command printed.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs a program to completion with no standard input.
func run(ctx context.Context, name string, args ...string) result {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// must runs a program and fails the test if it fails.
func must(t *testing.T, ctx context.Context, name string, args ...string) result {
	t.Helper()
	r := run(ctx, name, args...)
	if r.err != nil {
		t.Fatalf("%s %s failed:\n%s", name, strings.Join(args, " "), r)
	}
	return r
}

// store is a set of synthetic store paths under a temporary root.
type store struct {
	Dir string
	// Busybox holds bin/busybox; Root holds bin/busybox and etc/motd and is
	// meant for --copy-to-root; Data holds share/data.txt.
	Busybox, Root, Data string
}

// newStore makes the synthetic store: three "store paths" named like Nix's,
// each a real directory, with a copy of Debian's static busybox so the image
// runs anywhere.
func newStore(t *testing.T) *store {
	t.Helper()
	bb := staticBusybox(t)
	dir := filepath.Join(t.TempDir(), "nix", "store")
	s := &store{
		Dir:     dir,
		Busybox: filepath.Join(dir, "0a7z5c2gbkb3k1c6n2v1mvx3rj4l06aa-busybox-1.35.0"),
		Root:    filepath.Join(dir, "1b8y6d3hclc4l2d7p3w2nwy4sk5m17bb-root"),
		Data:    filepath.Join(dir, "2c9x7f4jdmd5m3f8q4x3pxz5vl6n28cc-data"),
	}
	copyFile(t, bb, filepath.Join(s.Busybox, "bin", "busybox"), 0o555)
	copyFile(t, bb, filepath.Join(s.Root, "bin", "busybox"), 0o555)
	writeFile(t, filepath.Join(s.Root, "etc", "motd"), "welcome to a nixoci image\n", 0o444)
	writeFile(t, filepath.Join(s.Data, "share", "data.txt"), "some data\n", 0o444)
	if err := os.Symlink("data.txt", filepath.Join(s.Data, "share", "link.txt")); err != nil {
		t.Fatal(err)
	}
	return s
}

// staticBusybox finds Debian's busybox-static binary.
func staticBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) {
			return p
		}
	}
	missing(t, "a static busybox is not installed (Debian package busybox-static)")
	return ""
}

// isStatic reports whether path is an ELF executable with no program
// interpreter (a dynamic loader), so it runs in an empty image.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(data), mode)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(data), 0o644)
	return path
}

// builtImage is an image descriptor built by the CLI.
type builtImage struct {
	Path  string
	Image *descriptor.Image
}

// buildImage runs `nixoci layers` and `nixoci image` on s and returns the
// image descriptor. extra are more `nixoci layers` flags.
func buildImage(t *testing.T, ctx context.Context, s *store, extra ...string) builtImage {
	t.Helper()
	dir := t.TempDir()
	layers := filepath.Join(dir, "layers.json")
	args := append([]string{"layers", "-o", layers, "--max-layers", "3", "--copy-to-root", s.Root}, extra...)
	args = append(args, s.Busybox, s.Root, s.Data)
	must(t, ctx, nixoci(t), args...)
	config := writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{
		"Entrypoint": []string{"/bin/busybox", "echo", hello},
		"Env":        []string{"PATH=/bin"},
	})
	out := filepath.Join(dir, "image.json")
	must(t, ctx, nixoci(t), "image", "-o", out, "--name", "nixoci-e2e", "--tag", "test", "--config", config, layers)
	img, err := descriptor.LoadImage(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) == 0 {
		t.Fatalf("%s has no layers", out)
	}
	return builtImage{Path: out, Image: img}
}

// uniqueName gives each test run its own image names in shared daemons.
func uniqueName(t *testing.T) string {
	t.Helper()
	n := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	return fmt.Sprintf("nixoci-e2e-%s-%d", n, time.Now().UnixNano()%1_000_000)
}

// freePort returns a 127.0.0.1 TCP port that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// registry returns host:port of a docker-registry: NIXOCI_TEST_REGISTRY when
// set (started by .ci/run), else a fresh one for this test.
func registry(t *testing.T, ctx context.Context) string {
	t.Helper()
	if r := os.Getenv("NIXOCI_TEST_REGISTRY"); r != "" {
		waitRegistry(t, ctx, r, "")
		return r
	}
	return startRegistry(t, ctx, "")
}

// startRegistry starts docker-registry on a free 127.0.0.1 port with its
// storage in a temporary directory, stopped when the test ends. A non-empty
// htpasswd file turns on basic auth.
func startRegistry(t *testing.T, ctx context.Context, htpasswd string) string {
	t.Helper()
	requireTools(t, "docker-registry")
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	if htpasswd != "" {
		config += fmt.Sprintf("auth:\n  htpasswd:\n    realm: nixoci-e2e\n    path: %s\n", htpasswd)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	writeFile(t, cfgPath, config, 0o644)
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("docker-registry log:\n%s", b)
			}
		}
	})
	status := ""
	if htpasswd != "" {
		status = "401"
	}
	waitRegistry(t, ctx, addr, status)
	return addr
}

// waitRegistry polls GET /v2/ until the registry answers (with 200, or
// with wantStatus when it is set).
func waitRegistry(t *testing.T, ctx context.Context, addr, wantStatus string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := fmt.Sprint(resp.StatusCode)
			if got == "200" || got == wantStatus {
				return
			}
		}
		select {
		case <-ctx.Done():
			missing(t, "registry at %s did not answer GET /v2/ (last error %v)", addr, err)
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
