package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// faultRegistry starts a docker-registry of the test's own behind a fault
// proxy and returns the proxy and its HOST:PORT.
func faultRegistry(t *testing.T, ctx context.Context) (*testenv.FaultProxy, string) {
	t.Helper()
	return testenv.StartFaultProxy(t, testenv.StartRegistry(t, ctx, testenv.RegistryOptions{}).Addr)
}

// buildFromPaths runs `nixoci layers` on store paths (with extra flags)
// and `nixoci image`, and returns the image descriptor's path; a failed
// `nixoci layers` is returned as is, with no descriptor.
func buildFromPaths(t *testing.T, ctx context.Context, extra []string, paths ...string) (string, testenv.Result) {
	t.Helper()
	dir := t.TempDir()
	layers := filepath.Join(dir, "layers.json")
	args := append(append([]string{"layers", "-o", layers}, extra...), paths...)
	if r := testenv.Run(ctx, nixoci(t), args...); r.Err != nil {
		return "", r
	}
	out := filepath.Join(dir, "image.json")
	r := testenv.Must(t, ctx, nixoci(t), "image", "-o", out, "--name", "nixoci-e2e", "--tag", "test", layers)
	return out, r
}

// unpackWithUmoci copies the image to an OCI layout and unpacks it with
// umoci, as a runtime would, returning the bundle directory (its rootfs is
// the image's root).
func unpackWithUmoci(t *testing.T, ctx context.Context, image string) string {
	t.Helper()
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	testenv.Must(t, ctx, nixoci(t), "copy", "nix:"+image, "oci:"+layout+":v1")
	bundle := filepath.Join(dir, "bundle")
	testenv.Must(t, ctx, "umoci", "unpack", "--rootless", "--image", layout+":v1", bundle)
	return bundle
}

// filesNamed returns the paths under dir, relative to it, of the files
// whose name starts with prefix.
func filesNamed(t *testing.T, dir, prefix string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), prefix) {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCaseHackEscape builds a layer from a store path holding
// ..~nix~case~hack~1/..~nix~case~hack~1/..~nix~case~hack~1/etc/escaped-…,
// plain and relocated to the root. nixoci must refuse it naming the file.
// Were a layer produced, umoci unpacks it and nothing may land outside
// the store path it came from (plain) or outside the root (relocated).
// Names that only look like the attack go through and land in place.
func TestCaseHackEscape(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireTools(t, "umoci")
	store := filepath.Join(t.TempDir(), "nix", "store")
	marker := fmt.Sprintf("escaped-%d", time.Now().UnixNano())
	hack := "..~nix~case~hack~1"
	evil := filepath.Join(store, "3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a-evil")
	testenv.WriteFile(t, filepath.Join(evil, hack, hack, hack, "etc", marker), "pwned\n", 0o444)
	testenv.WriteFile(t, filepath.Join(evil, "bin", "ok"), "ok\n", 0o444)

	for _, tc := range []struct {
		name  string
		extra []string
		// inside is where the marker may land, relative to the rootfs.
		inside string
	}{
		{"in the store", nil, strings.TrimPrefix(evil, "/")},
		{"copy to root", []string{"--copy-to-root", evil}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			image, r := buildFromPaths(t, ctx, tc.extra, evil)
			if image == "" {
				for _, want := range []string{evil, hack, "case-hack"} {
					if !strings.Contains(r.Stderr, want) {
						t.Errorf("nixoci layers refused the path but does not name %q:\n%s", want, r.Stderr)
					}
				}
				return
			}
			t.Errorf("nixoci layers accepted a store path whose case-hack names hold ..")
			bundle := unpackWithUmoci(t, ctx, image)
			for _, p := range filesNamed(t, filepath.Dir(bundle), marker) {
				if !strings.HasPrefix(p, filepath.Join("bundle", "rootfs", tc.inside)+"/") {
					t.Errorf("umoci unpacked %s outside %s", p, filepath.Join("bundle", "rootfs", tc.inside))
				}
			}
		})
	}

	t.Run("names that stay", func(t *testing.T) {
		odd := filepath.Join(store, "4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b-odd")
		testenv.WriteFile(t, filepath.Join(odd, "...~nix~case~hack~1", marker+"-dots"), "three dots\n", 0o444)
		testenv.WriteFile(t, filepath.Join(odd, "..b~nix~case~hack~2", marker+"-b"), "dot dot b\n", 0o444)
		image, r := buildFromPaths(t, ctx, nil, odd)
		if image == "" {
			t.Fatalf("nixoci layers refused legal names:\n%s", r)
		}
		rootfs := filepath.Join(unpackWithUmoci(t, ctx, image), "rootfs")
		rel := strings.TrimPrefix(odd, "/")
		for _, p := range []string{filepath.Join(rel, "...", marker+"-dots"), filepath.Join(rel, "..b", marker+"-b")} {
			if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
				t.Errorf("unpacked image lacks /%s: %v", p, err)
			}
		}
		if got := filesNamed(t, rootfs, marker); len(got) != 2 {
			t.Errorf("files named %s* in the rootfs = %v, want the two under %s", marker, got, rel)
		}
	})
}

// TestParallelOCICopies runs four `nixoci copy` processes at once into one
// oci: layout, existing or new: all succeed and every tag is kept.
func TestParallelOCICopies(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireTools(t, "skopeo")
	img := buildImage(t, ctx, newStore(t))
	for _, existing := range []bool{true, false} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) {
			layout := filepath.Join(t.TempDir(), "layout")
			tags := []string{"t1", "t2", "t3", "t4"}
			if existing {
				copyImage(t, ctx, img, "oci:"+layout+":t0")
				tags = append(tags, "t0")
			}
			results := make([]testenv.Result, 4)
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = testenv.Run(ctx, nixoci(t), "copy", "nix:"+img.Path, fmt.Sprintf("oci:%s:t%d", layout, i+1))
				}()
			}
			wg.Wait()
			for i, r := range results {
				if r.Err != nil {
					t.Errorf("copy to tag t%d failed:\n%s", i+1, r)
				}
			}
			for _, tag := range tags {
				if r := testenv.Run(ctx, "skopeo", "inspect", "oci:"+layout+":"+tag); r.Err != nil {
					t.Errorf("skopeo inspect oci:%s:%s failed: the tag was lost:\n%s", layout, tag, r)
				}
			}
			if left := listDir(t, filepath.Dir(layout)); strings.Join(left, " ") != "layout" {
				t.Errorf("the copies left %v next to the layout", left)
			}
		})
	}
}

// TestInterruptedDockerArchive stops `nixoci copy nix:… docker-archive:`
// with SIGINT and SIGTERM while a 256 MiB layer streams: nothing is left
// at the destination (before, a partial archive was, and the rerun was
// refused), and a rerun writes the archive.
func TestInterruptedDockerArchive(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	big := filepath.Join(t.TempDir(), "nix", "store", "5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c-big")
	if err := os.MkdirAll(big, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(big, "random"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 256<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	image, r := buildFromPaths(t, ctx, []string{"--compression", "none"}, big)
	if image == "" {
		t.Fatalf("nixoci layers:\n%s", r)
	}

	parent := t.TempDir()
	archive := filepath.Join(parent, "image.tar")
	dest := "docker-archive:" + archive + ":nixoci-e2e/interrupted:v1"
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.CommandContext(ctx, nixoci(t), "copy", "nix:"+image, dest)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal once the copy is writing.
			deadline := time.Now().Add(30 * time.Second)
			for len(listDir(t, parent)) == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if len(listDir(t, parent)) == 0 {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("nixoci copy wrote nothing within 30s:\n%s", stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("nixoci copy exited 0 after %v: it finished before the signal", sig)
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("nixoci copy did not exit within 30s of %v:\n%s", sig, stderr.String())
			}
			if left := listDir(t, parent); len(left) != 0 {
				t.Errorf("after %v, %s holds %v:\n%s", sig, parent, left, stderr.String())
				for _, name := range left {
					os.Remove(filepath.Join(parent, name))
				}
			}
		})
	}
	testenv.Must(t, ctx, nixoci(t), "copy", "nix:"+image, dest)
	names := map[string]bool{}
	for _, e := range testenv.ReadTar(t, archive) {
		names[e.Header.Name] = true
	}
	if !names["manifest.json"] {
		t.Errorf("the rerun's archive has no manifest.json: %v", names)
	}
	if left := listDir(t, parent); strings.Join(left, " ") != "image.tar" {
		t.Errorf("the rerun left %v", left)
	}
}
