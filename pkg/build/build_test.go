package build_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// store makes one directory per name, each with a file, standing for store
// paths, and a graph in which app refers to lib.
func store(t *testing.T) (map[string]string, *closure.Graph) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nix", "store")
	paths := map[string]string{}
	for _, n := range []string{"app", "lib", "root"} {
		p := filepath.Join(dir, "00000000000000000000000000000000-"+n)
		if err := os.MkdirAll(filepath.Join(p, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "bin", n), []byte(n), 0o755); err != nil {
			t.Fatal(err)
		}
		paths[n] = p
	}
	g, err := closure.ParseGraph("graph", []byte(`[
		{"path": "`+paths["app"]+`", "references": ["`+paths["lib"]+`"]},
		{"path": "`+paths["lib"]+`", "references": []},
		{"path": "`+paths["root"]+`", "references": ["`+paths["app"]+`"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	return paths, g
}

// entries returns the tar entries of a layer, by name.
func entries(t *testing.T, l layer.Layer) map[string]*tar.Header {
	t.Helper()
	r, err := l.Uncompressed(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func storePaths(ls []layer.Layer) []string {
	var out []string
	for p := range layer.StorePaths(ls...) {
		out = append(out, p)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestBelowTarLayer checks that the store paths of a layer below that is
// served from a tar are left out (they used to be repeated).
func TestBelowTarLayer(t *testing.T) {
	paths, g := store(t)
	below, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 1, Roots: []string{paths["lib"]}, TarDirectory: t.TempDir()})
	if err != nil {
		t.Fatalf("Layers(below) = %v", err)
	}
	if d := below[0].(layer.Describer).Descriptor(); d.Tar == "" || len(d.Paths) != 0 {
		t.Fatalf("Layers(TarDirectory) = %+v, want a tar layer", d)
	}
	own, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 3, Roots: []string{paths["app"]}, Below: below})
	if err != nil {
		t.Fatalf("Layers() = %v", err)
	}
	if diff := cmp.Diff([]string{paths["app"]}, storePaths(own)); diff != "" {
		t.Errorf("Layers() above a tar layer holding lib (-want +got):\n%s", diff)
	}
}

// TestStoreOwner checks that StoreOwner owns the store paths' entries but
// not the relocated copy-to-root content, and that perms still apply.
func TestStoreOwner(t *testing.T) {
	paths, g := store(t)
	mode := "0700"
	ls, err := build.Layers(ctx(t), g, build.Options{
		MaxLayers:  1,
		Roots:      []string{paths["root"]},
		CopyToRoot: []string{paths["root"]},
		StoreOwner: &build.Owner{UID: 1000, GID: 100},
		Perms:      []closure.PermSpec{{Path: paths["app"], Perm: descriptor.Perm{Regex: "/bin/app$", Mode: mode}}},
		History:    &descriptor.History{},
	})
	if err != nil {
		t.Fatalf("Layers() = %v", err)
	}
	if len(ls) != 1 {
		t.Fatalf("Layers() = %d layers, want 1", len(ls))
	}
	if h := ls[0].(layer.Describer).Descriptor().History; h != nil {
		t.Errorf("an empty history gave %+v, want none", h)
	}
	es := entries(t, ls[0])
	app := strings.TrimPrefix(paths["app"], "/") + "/bin/app"
	if h := es[app]; h == nil || h.Uid != 1000 || h.Gid != 100 || h.Mode&0o7777 != 0o700 {
		t.Errorf("%s = %+v, want owner 1000:100 and the perms' mode 0700", app, h)
	}
	if h := es["bin/root"]; h == nil || h.Uid != 0 || h.Gid != 0 {
		t.Errorf("relocated bin/root = %+v, want root-owned", h)
	}
}

// TestFailureLeavesNoTar checks that a failed build removes the tars it
// wrote.
func TestFailureLeavesNoTar(t *testing.T) {
	paths, g := store(t)
	dir := t.TempDir()
	if err := os.RemoveAll(paths["lib"]); err != nil {
		t.Fatal(err)
	}
	_, err := build.Layers(ctx(t), g, build.Options{MaxLayers: 3, Roots: []string{paths["app"]}, TarDirectory: dir})
	if err == nil || !strings.Contains(err.Error(), paths["lib"]) {
		t.Fatalf("Layers(missing lib) = %v, want an error naming it", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a failed build left %d files in the tar directory", len(left))
	}
}
