package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// hello is what the test images' entrypoint prints.
const hello = "hello from nixoci"

// nixociBuild is the nixoci binary, built once for the whole test run.
// NIXOCI_E2E_BINARY names a prebuilt binary to test instead.
var nixociBuild = &testenv.OnceBuild{Env: "NIXOCI_E2E_BINARY", CGO: true}

func TestMain(m *testing.M) { os.Exit(nixociBuild.RunTests(m)) }

// nixoci returns the path of the freshly built binary.
func nixoci(t *testing.T) string {
	t.Helper()
	return nixociBuild.Path(t)
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
	bb := testenv.StaticBusybox(t)
	dir := filepath.Join(t.TempDir(), "nix", "store")
	s := &store{
		Dir:     dir,
		Busybox: filepath.Join(dir, "0a7z5c2gbkb3k1c6n2v1mvx3rj4l06aa-busybox-1.35.0"),
		Root:    filepath.Join(dir, "1b8y6d3hclc4l2d7p3w2nwy4sk5m17bb-root"),
		Data:    filepath.Join(dir, "2c9x7f4jdmd5m3f8q4x3pxz5vl6n28cc-data"),
	}
	testenv.CopyFile(t, bb, filepath.Join(s.Busybox, "bin", "busybox"), 0o555)
	testenv.CopyFile(t, bb, filepath.Join(s.Root, "bin", "busybox"), 0o555)
	testenv.WriteFile(t, filepath.Join(s.Root, "etc", "motd"), "welcome to a nixoci image\n", 0o444)
	testenv.WriteFile(t, filepath.Join(s.Data, "share", "data.txt"), "some data\n", 0o444)
	if err := os.Symlink("data.txt", filepath.Join(s.Data, "share", "link.txt")); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, path, string(data), 0o644)
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
	testenv.Must(t, ctx, nixoci(t), args...)
	config := writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{
		"Entrypoint": []string{"/bin/busybox", "echo", hello},
		"Env":        []string{"PATH=/bin"},
	})
	out := filepath.Join(dir, "image.json")
	testenv.Must(t, ctx, nixoci(t), "image", "-o", out, "--name", "nixoci-e2e", "--tag", "test", "--config", config, layers)
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

// registry returns host:port of a docker-registry: NIXOCI_TEST_REGISTRY when
// set (started by .ci/run), else a fresh one for this test.
func registry(t *testing.T, ctx context.Context) string {
	t.Helper()
	if r := os.Getenv("NIXOCI_TEST_REGISTRY"); r != "" {
		testenv.WaitRegistry(t, ctx, r)
		return r
	}
	return testenv.StartRegistry(t, ctx, testenv.RegistryOptions{}).Addr
}
