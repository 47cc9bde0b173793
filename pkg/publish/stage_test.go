package publish

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// brokenImage returns a nix: image directory whose second layer cannot be
// streamed as described: its store path is gone, or a file changed.
func brokenImage(t *testing.T, how string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	a := tree(t, map[string]string{"bin/a": "alpha\n"})
	b := tree(t, map[string]string{"share/b": strings.Repeat("beta ", 40000)})
	writeImage(t, dir, descriptor.Gzip, nil, rooted(a), rooted(b))
	switch how {
	case "store path gone":
		if err := os.RemoveAll(b); err != nil {
			t.Fatal(err)
		}
	case "content changed":
		if err := os.WriteFile(filepath.Join(b, "share/b"), []byte(strings.Repeat("BETA ", 40000)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// siblings lists the entries of dir's parent other than want.
func siblings(t *testing.T, parent string, want ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.Contains(strings.Join(want, "\x00"), e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCopyIsAtomic(t *testing.T) {
	ctx := testContext(t)
	good, _ := twoLayerImage(t)
	for _, how := range []string{"store path gone", "content changed"} {
		for _, tc := range []struct{ transport, suffix string }{
			{"dir", ""},
			{"oci", ":v1"},
		} {
			t.Run(how+"/"+tc.transport+"/new", func(t *testing.T) {
				parent := t.TempDir()
				dest := filepath.Join(parent, "out")
				err := Copy(ctx, "nix:"+brokenImage(t, how), tc.transport+":"+dest+tc.suffix, Options{})
				if err == nil {
					t.Fatal("Copy() from a broken image = nil, want an error")
				}
				if _, serr := os.Lstat(dest); !os.IsNotExist(serr) {
					t.Errorf("failed Copy() left %s (stat: %v)", dest, serr)
				}
				if left := siblings(t, parent); len(left) != 0 {
					t.Errorf("failed Copy() left %v next to the destination", left)
				}
			})
		}
		t.Run(how+"/dir/replacing", func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			if err := Copy(ctx, "nix:"+good, "dir:"+dest, Options{}); err != nil {
				t.Fatalf("Copy(good) = %v", err)
			}
			before, err := os.ReadFile(filepath.Join(dest, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := Copy(ctx, "nix:"+brokenImage(t, how), "dir:"+dest, Options{}); err == nil {
				t.Fatal("Copy() from a broken image = nil, want an error")
			}
			after, err := os.ReadFile(filepath.Join(dest, "manifest.json"))
			if err != nil || !bytes.Equal(before, after) {
				t.Errorf("failed Copy() changed the earlier image: %v", err)
			}
			if left := siblings(t, parent, "out"); len(left) != 0 {
				t.Errorf("failed Copy() left %v next to the destination", left)
			}
		})
	}

	t.Run("success", func(t *testing.T) {
		for _, tc := range []struct{ transport, marker, suffix string }{
			{"dir", "manifest.json", ""},
			{"oci", "index.json", ":v1"},
		} {
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			for range 2 { // new, then over the earlier copy
				if err := Copy(ctx, "nix:"+good, tc.transport+":"+dest+tc.suffix, Options{}); err != nil {
					t.Fatalf("Copy(%s) = %v", tc.transport, err)
				}
				if _, err := os.Stat(filepath.Join(dest, tc.marker)); err != nil {
					t.Errorf("Copy(%s) result lacks %s: %v", tc.transport, tc.marker, err)
				}
				if left := siblings(t, parent, "out"); len(left) != 0 {
					t.Errorf("Copy(%s) left %v next to the destination", tc.transport, left)
				}
			}
			if tc.transport == "oci" {
				readLayout(t, dest)
			}
		}
	})

	t.Run("dir that is not an image", func(t *testing.T) {
		dest := t.TempDir()
		keep := filepath.Join(dest, "precious.txt")
		if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Copy(ctx, "nix:"+good, "dir:"+dest, Options{}); err == nil {
			t.Error("Copy() into a non-image directory = nil, want containers/image's refusal")
		}
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("Copy() removed an unrelated file: %v", err)
		}
	})
}
