package build_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
)

// TestShadowing relocates a store path holding files under another store
// path's image path. Other content there is an error naming both store
// paths and the file, whether the other path is in a layer below or in the
// same build; the same content, a new file or a directory is not.
func TestShadowing(t *testing.T) {
	paths, _ := store(t)
	lib := paths["lib"]
	libInImage := strings.TrimPrefix(lib, "/")
	libFile := filepath.Join(lib, "bin", "lib")
	libContent, err := os.ReadFile(libFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string // relative to the copy-to-root path; "->x" is a symlink to x
		below bool
		want  string // the shadowed file; "" when accepted
	}{
		{"other content, same build", map[string]string{libInImage + "/bin/lib": "evil"}, false, libFile},
		{"other content, below", map[string]string{libInImage + "/bin/lib": "evil"}, true, libFile},
		{"a symlink over the file", map[string]string{libInImage + "/bin/lib": "->/etc/passwd"}, false, libFile},
		{"a file over its directory", map[string]string{libInImage + "/bin": "evil"}, true, filepath.Join(lib, "bin")},
		{"a symlink over the store directory", map[string]string{filepath.Dir(libInImage): "->/tmp"}, false, lib},
		{"same content", map[string]string{libInImage + "/bin/lib": string(libContent), "etc/motd": "hi"}, false, ""},
		{"a new file", map[string]string{libInImage + "/bin/extra": "more"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(filepath.Dir(lib), "11111111111111111111111111111111-root-"+strings.ReplaceAll(tc.name, " ", "-"))
			for rel, content := range tc.files {
				p := filepath.Join(root, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if target, ok := strings.CutPrefix(content, "->"); ok {
					err = os.Symlink(target, p)
				} else {
					err = os.WriteFile(p, []byte(content), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			opts := build.Options{MaxLayers: 3, Roots: []string{root, lib}, CopyToRoot: []string{root}, TarDirectory: t.TempDir()}
			if tc.below {
				below, err := build.Layers(ctx(t), closure.FromPaths([]string{lib}), build.Options{MaxLayers: 1, Roots: []string{lib}})
				if err != nil {
					t.Fatal(err)
				}
				opts.Below = below
			}
			ls, err := build.Layers(ctx(t), closure.FromPaths([]string{root, lib}), opts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Layers() = %v, want no error", err)
				}
				if len(ls) == 0 {
					t.Fatal("Layers() gave no layers")
				}
				return
			}
			var se *build.ShadowError
			if !errors.As(err, &se) {
				t.Fatalf("Layers() = %v, want a *ShadowError", err)
			}
			if se.CopyToRoot != root || se.StorePath != lib || se.File != tc.want || se.Below != tc.below {
				t.Errorf("Layers() = %+v, want copy-to-root %s, store path %s, file %s, below %v", se, root, lib, tc.want, tc.below)
			}
			for _, want := range []string{root, lib, tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Layers() = %q, does not name %s", err, want)
				}
			}
			if left, _ := os.ReadDir(opts.TarDirectory); len(left) != 0 {
				t.Errorf("the refused build left %d files in the tar directory", len(left))
			}
		})
	}
}
