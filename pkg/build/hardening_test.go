package build_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/layer"
)

// readAll streams l's tar to its end: the stream checks itself against the
// diff_id, so an error means the tar is not the described one.
func readAll(t *testing.T, l layer.Layer) error {
	t.Helper()
	r, err := l.Uncompressed(ctx(t))
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

func tarOf(t *testing.T, l layer.Layer) string {
	t.Helper()
	return l.(layer.Describer).Descriptor().Tar
}

// TestTarDirectoryKeepsEarlierTars builds twice into one tar directory:
// the tars are named by their diff_id, the second build writes over
// nothing of the first (whose layers still read back as described), and a
// rebuild keeps the file it finds under the same name.
func TestTarDirectoryKeepsEarlierTars(t *testing.T) {
	paths, g := store(t)
	dir := t.TempDir()
	first, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 2, Roots: []string{paths["app"]}, TarDirectory: dir})
	if err != nil {
		t.Fatalf("Layers(app) = %v", err)
	}
	second, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 1, Roots: []string{paths["root"]}, TarDirectory: dir})
	if err != nil {
		t.Fatalf("Layers(root) = %v", err)
	}
	for _, l := range append(append([]layer.Layer(nil), first...), second...) {
		if want := filepath.Join(dir, build.TarName(l.DiffID())); tarOf(t, l) != want {
			t.Errorf("layer %s tar = %s, want %s", l.DiffID(), tarOf(t, l), want)
		}
		if err := readAll(t, l); err != nil {
			t.Errorf("after both builds, layer %s (%s) = %v, want its described tar", l.DiffID(), tarOf(t, l), err)
		}
	}
	before, err := os.Stat(tarOf(t, first[0]))
	if err != nil {
		t.Fatal(err)
	}
	again, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 2, Roots: []string{paths["app"]}, TarDirectory: dir})
	if err != nil {
		t.Fatalf("Layers(app) again = %v", err)
	}
	after, err := os.Stat(tarOf(t, again[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("the rebuild replaced %s; want the file of the same name kept", tarOf(t, again[0]))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("tar directory holds %q, want the 3 layer tars and nothing else", names)
	}
}

// TestTarDirectoryRefusesForeignFile puts another file under a layer's
// tar name: the build fails naming it, leaves the file as it was and
// leaves no tar of its own behind.
func TestTarDirectoryRefusesForeignFile(t *testing.T) {
	paths, g := store(t)
	probe, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 1, Roots: []string{paths["lib"]}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	foreign := filepath.Join(dir, build.TarName(probe[0].DiffID()))
	if err := os.WriteFile(foreign, []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = build.Layers(ctx(t), g, build.Options{MaxLayers: 2, Roots: []string{paths["app"]}, TarDirectory: dir})
	if !errors.Is(err, build.ErrTarExists) || !strings.Contains(err.Error(), foreign) {
		t.Fatalf("Layers() over a foreign %s = %v, want ErrTarExists naming it", foreign, err)
	}
	if data, _ := os.ReadFile(foreign); string(data) != "not a tar" {
		t.Errorf("the failed build changed %s to %q", foreign, data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the failed build left %d files in the tar directory, want only the foreign one", len(entries))
	}
}

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
