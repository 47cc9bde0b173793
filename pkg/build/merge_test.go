package build_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/layer"
)

func mkPath(t *testing.T, store, name string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(store, name)
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestLayersMerge: overlapping copy-to-root paths merge in the order given,
// each replacement is logged once (identical ones are not), and owner and
// mtime reach every path.
func TestLayersMerge(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	bash := mkPath(t, store, "zzz-bash", map[string]string{"bin/bash": "bash", "bin/sh": "->bash", "etc/shells": "same"})
	binSh := mkPath(t, store, "aaa-bin-sh", map[string]string{"bin/sh": "->" + bash + "/bin/bash", "etc/shells": "same"})
	log, hook := test.NewNullLogger()
	when := time.Unix(1700000000, 0)
	ls, err := build.Layers(context.Background(), closure.FromPaths(nil), build.Options{
		MaxLayers:  1,
		CopyToRoot: []string{bash, binSh},
		Owner:      &build.Identity{UID: 1000, GID: 1000, Uname: "app", Gname: "app"},
		Mtime:      &when,
		Log:        log,
	})
	if err != nil {
		t.Fatalf("Layers() = %v", err)
	}
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	want := "/bin/sh: " + binSh + " replaces the one from " + bash
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings = %q, want one starting %q", warnings, want)
	}
	d := ls[0].(layer.Describer).Descriptor()
	if len(d.Paths) != 2 || d.Paths[0].Path != bash || d.Paths[1].Path != binSh {
		t.Fatalf("paths %+v, want bash then binSh, in the order given", d.Paths)
	}
	for _, p := range d.Paths {
		if p.Mtime == nil || *p.Mtime != when.Unix() {
			t.Errorf("%s: mtime %v, want %d", p.Path, p.Mtime, when.Unix())
		}
		if len(p.Perms) == 0 || p.Perms[0].UID == nil || *p.Perms[0].UID != 1000 || *p.Perms[0].Uname != "app" {
			t.Errorf("%s: perms %+v, want the owner first", p.Path, p.Perms)
		}
	}
}

// TestLayersDefaultsUnchanged: without owner, mtime or dirlink options the
// paths carry none of the new fields, so existing digests stay.
func TestLayersDefaultsUnchanged(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	a := mkPath(t, store, "aaa-a", map[string]string{"f": "a"})
	ls, err := build.Layers(context.Background(), closure.FromPaths([]string{a}), build.Options{MaxLayers: 1, CopyToRoot: []string{a}, StoreOwner: &build.Owner{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ls[0].(layer.Describer).Descriptor().Paths {
		if p.Mtime != nil || p.KeepDirlinks || len(p.Perms) != 0 {
			t.Errorf("%s: %+v, want no mtime, keepDirlinks or perms", p.Path, p)
		}
	}
	one := time.Unix(1, 0)
	ls, err = build.Layers(context.Background(), closure.FromPaths([]string{a}), build.Options{MaxLayers: 1, Mtime: &one, KeepDirlinks: true, CopyToRoot: []string{a}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ls[0].(layer.Describer).Descriptor().Paths {
		if p.Mtime != nil {
			t.Errorf("%s: mtime %d recorded, want the default (1) left out", p.Path, *p.Mtime)
		}
		if want := p.Rewrite != nil; p.KeepDirlinks != want {
			t.Errorf("%s: keepDirlinks %v, want %v (relocated paths only)", p.Path, p.KeepDirlinks, want)
		}
	}
}
