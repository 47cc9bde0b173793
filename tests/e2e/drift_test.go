package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// TestDrift changes a store file after the image was built, then copies
// the image to each kind of destination. Every copy must fail with an error
// that names the changed file and says what to do, and leave nothing
// tagged: no manifest in the registry, no image in the daemon, the storage
// or the layout.
func TestDrift(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	s := newStore(t)
	img := buildImage(t, ctx, s)
	changed := filepath.Join(s.Data, "share", "data.txt")
	// Same size, other bytes: only the content check can tell.
	testenv.WriteFile(t, changed, "SOME DATA\n", 0o644)
	file := strings.TrimPrefix(changed, "/")

	for _, tc := range []struct {
		name    string
		require func(t *testing.T)
		dest    func(t *testing.T) string
		absent  func(t *testing.T, dest string) // nothing is left under the name
		flags   []string
	}{
		{
			name:    "registry",
			require: func(t *testing.T) { testenv.RequireTools(t, "skopeo") },
			dest: func(t *testing.T) string {
				return "docker://" + registry(t, ctx) + "/" + uniqueName(t) + ":v1"
			},
			absent: func(t *testing.T, dest string) {
				if r := testenv.Run(ctx, "skopeo", "inspect", "--tls-verify=false", dest); r.Err == nil {
					t.Errorf("after the failed copy, skopeo inspect %s found a manifest:\n%s", dest, r.Stdout)
				}
			},
			flags: []string{"--dest-tls-verify=false"},
		},
		{
			name:    "oci layout",
			require: func(t *testing.T) {},
			dest: func(t *testing.T) string {
				return "oci:" + filepath.Join(t.TempDir(), "layout") + ":v1"
			},
			absent: func(t *testing.T, dest string) {
				dir := strings.TrimSuffix(strings.TrimPrefix(dest, "oci:"), ":v1")
				if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
					t.Errorf("after the failed copy, the layout %s has an index.json", dir)
				}
			},
		},
		{
			name:    "docker daemon",
			require: func(t *testing.T) { testenv.RequireDocker(t) },
			dest: func(t *testing.T) string {
				name := uniqueName(t) + ":v1"
				t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "docker", "rmi", "-f", name) })
				return "docker-daemon:" + name
			},
			absent: func(t *testing.T, dest string) {
				name := strings.TrimPrefix(dest, "docker-daemon:")
				if r := testenv.Run(ctx, "docker", "image", "inspect", name); r.Err == nil {
					t.Errorf("after the failed copy, docker has the image %s", name)
				}
			},
		},
		{
			name: "containers-storage",
			require: func(t *testing.T) {
				testenv.RequireRoot(t, "the containers-storage destination")
				testenv.RequireTools(t, "podman")
			},
			dest: func(t *testing.T) string {
				name := "localhost/" + uniqueName(t) + ":v1"
				t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "podman", "rmi", "-f", name) })
				return "containers-storage:" + name
			},
			absent: func(t *testing.T, dest string) {
				name := strings.TrimPrefix(dest, "containers-storage:")
				if r := testenv.Run(ctx, "podman", "image", "exists", name); r.Err == nil {
					t.Errorf("after the failed copy, podman has the image %s", name)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.require(t)
			dest := tc.dest(t)
			args := append(append([]string{"copy"}, tc.flags...), "nix:"+img.Path, dest)
			r := testenv.Cmd{Name: nixoci(t), Args: args, Timeout: 3 * time.Minute}.Run(context.Background())
			if r.Err == nil {
				t.Fatalf("copying an image whose store changed to %s succeeded:\n%s%s", dest, r.Stdout, r.Stderr)
			}
			for _, want := range []string{file, "rebuild"} {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("the error does not say %q:\n%s", want, r.Stderr)
				}
			}
			if strings.Contains(r.Stderr, "Digest did not match") {
				t.Errorf("the error is containers/image's generic digest mismatch, not ours:\n%s", r.Stderr)
			}
			tc.absent(t, dest)
		})
	}
}
