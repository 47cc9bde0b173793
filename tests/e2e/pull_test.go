package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestPulledBase copies an image to a dir: layout, describes it with
// image-from-dir and image-from-manifest, builds an image on top of each and
// checks that the result has the base's files and its own.
func TestPulledBase(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireTools(t, "umoci")
	s := newStore(t)
	base := buildImage(t, ctx, s)
	dir := t.TempDir()
	bin := nixoci(t)
	pulled := filepath.Join(dir, "pulled")
	copyImage(t, ctx, base, "dir:"+pulled)

	// The top layer: one more store path.
	app := filepath.Join(s.Dir, "4e1v9h6kfnf7p5h0s6z5rza7xn8q40ee-app")
	testenv.WriteFile(t, filepath.Join(app, "bin", "app.txt"), "the app\n", 0o444)
	top := filepath.Join(dir, "top.json")
	testenv.Must(t, ctx, bin, "layers", "-o", top, app)

	// image-from-manifest takes the manifest and one file per blob.
	var m ocispec.Manifest
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(pulled, "manifest.json")), &m); err != nil {
		t.Fatal(err)
	}
	blobArgs := []string{"--blob", m.Config.Digest.String() + "=" + filepath.Join(pulled, m.Config.Digest.Encoded())}
	for _, l := range m.Layers {
		blobArgs = append(blobArgs, "--blob", l.Digest.String()+"="+filepath.Join(pulled, l.Digest.Encoded()))
	}

	for _, tt := range []struct {
		name string
		args []string
	}{
		{"image-from-dir", []string{"image-from-dir", "--name", "base", "--tag", "v1", pulled}},
		{"image-from-manifest", append([]string{"image-from-manifest", "--name", "base", "--tag", "v1", "--manifest", filepath.Join(pulled, "manifest.json")}, blobArgs...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wdir := t.TempDir()
			baseJSON := filepath.Join(wdir, "base.json")
			testenv.Must(t, ctx, bin, append([]string{tt.args[0], "-o", baseJSON}, tt.args[1:]...)...)
			b, err := descriptor.LoadImage(baseJSON)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Layers) != len(base.Image.Layers) {
				t.Fatalf("%s: %d layers, want the base's %d", tt.name, len(b.Layers), len(base.Image.Layers))
			}
			for i, l := range b.Layers {
				if l.DiffID != base.Image.Layers[i].DiffID || l.Digest != base.Image.Layers[i].Digest {
					t.Errorf("%s: layer %d = %s (diff_id %s), want %s (%s)", tt.name, i, l.Digest, l.DiffID, base.Image.Layers[i].Digest, base.Image.Layers[i].DiffID)
				}
			}
			if got := strings.Join(b.Config.Entrypoint, " "); !strings.Contains(got, hello) {
				t.Errorf("%s: entrypoint %q, want the base's", tt.name, got)
			}

			imgJSON := filepath.Join(wdir, "image.json")
			testenv.Must(t, ctx, bin, "image", "-o", imgJSON, "--name", "on-base", "--from-image", baseJSON, top)
			testenv.Must(t, ctx, bin, "verify", "nix:"+imgJSON)
			layout := filepath.Join(wdir, "layout")
			testenv.Must(t, ctx, bin, "copy", "nix:"+imgJSON, "oci:"+layout+":v1")
			bundle := filepath.Join(wdir, "bundle")
			testenv.Must(t, ctx, "umoci", "unpack", "--rootless", "--image", layout+":v1", bundle)
			for _, p := range []string{"etc/motd", strings.TrimPrefix(app, "/") + "/bin/app.txt"} {
				if _, err := os.Stat(filepath.Join(bundle, "rootfs", p)); err != nil {
					t.Errorf("%s: unpacked image lacks /%s: %v", tt.name, p, err)
				}
			}
		})
	}

	t.Run("bad input", func(t *testing.T) {
		wdir := t.TempDir()
		out := filepath.Join(wdir, "out.json")
		failing(t, ctx, []string{filepath.Join(wdir, "nope")}, "image-from-dir", "-o", out, filepath.Join(wdir, "nope"))
		// A blob file whose content does not match its digest.
		bad := filepath.Join(wdir, "bad-blob")
		testenv.WriteFile(t, bad, "not the config\n", 0o644)
		args := []string{"image-from-manifest", "-o", out, "--manifest", filepath.Join(pulled, "manifest.json"), "--blob", m.Config.Digest.String() + "=" + bad}
		failing(t, ctx, []string{bad}, append(args, blobArgs[2:]...)...)
		failing(t, ctx, []string{"--blob", "nodigest"}, "image-from-manifest", "-o", out, "--manifest", filepath.Join(pulled, "manifest.json"), "--blob", "nodigest")
		if _, err := os.Stat(out); err == nil {
			t.Errorf("failed commands left %s behind", out)
		}
	})
}
