package pull

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/tests/testenv"
)

// TestFromDirSkopeo reads a dir: layout written by containers/image itself
// (skopeo), from an OCI layout made with umoci.
func TestFromDirSkopeo(t *testing.T) {
	testenv.RequireTools(t, "umoci", "skopeo")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmp := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(tmp, "root", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "root", "etc", "hello"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("umoci", "init", "--layout", "layout")
	run("umoci", "new", "--image", "layout:t")
	run("umoci", "insert", "--image", "layout:t", "root/etc", "/etc")
	run("umoci", "config", "--image", "layout:t", "--config.cmd", "/bin/hello", "--architecture", "arm64", "--config.env", "A=1")
	run("skopeo", "copy", "oci:layout:t", "dir:out")

	img, err := FromDir(context.Background(), filepath.Join(tmp, "out"), Options{Arch: "arm64"})
	if err != nil {
		t.Fatalf("FromDir() error = %v", err)
	}
	if img.Architecture != "arm64" || len(img.Config.Cmd) != 1 || img.Config.Cmd[0] != "/bin/hello" {
		t.Errorf("FromDir() arch, cmd = %q, %q; want arm64, [/bin/hello]", img.Architecture, img.Config.Cmd)
	}
	if len(img.Layers) != 1 {
		t.Fatalf("FromDir() layers = %d, want 1", len(img.Layers))
	}
	l := img.Layers[0]
	if _, err := os.Stat(l.Blob); err != nil || filepath.Base(l.Blob) != l.Digest.Encoded() {
		t.Errorf("layer blob = %s (%v), want the file named %s", l.Blob, err, l.Digest.Encoded())
	}
	if l.UncompressedSize <= l.Size {
		t.Errorf("layer uncompressed size = %d, compressed %d: want the tar measured", l.UncompressedSize, l.Size)
	}
	// Served uncompressed, the layer is the tar skopeo's config names.
	lv, err := layer.FromDescriptor(l)
	if err != nil {
		t.Fatal(err)
	}
	if d := image.ManifestLayer(layer.Uncompressed(lv)); d.Digest != l.DiffID || d.Size != l.UncompressedSize {
		t.Errorf("image.ManifestLayer(uncompressed) = %v, want diff_id %s size %d", d, l.DiffID, l.UncompressedSize)
	}
}
