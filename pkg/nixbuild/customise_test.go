package nixbuild

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// TestTreePerms: only the modes the store resets are recorded, symlinks
// never, and an owner shared by a whole tree is one entry.
func TestTreePerms(t *testing.T) {
	const root = "/nix/store/aaaa-root"
	entries := []treeEntry{
		{rel: "bin", dir: true, mode: 0o555},
		{rel: "bin/sh", symlink: true, mode: 0o777},
		{rel: "bin/tool", mode: 0o755},
		{rel: "data", dir: true, mode: 0o755, uid: 1000, gid: 1000},
		{rel: "data/a", mode: 0o444, uid: 1000, gid: 1000},
		{rel: "data/sub", dir: true, mode: 0o555, uid: 1000, gid: 1000},
		{rel: "data/sub/b", mode: 0o644, uid: 1000, gid: 1000},
		{rel: "data-other", mode: 0o444, uid: 7, gid: 8},
		{rel: "etc", dir: true, mode: 0o555},
		{rel: "etc/passwd", mode: 0o444},
		{rel: "home", dir: true, mode: 0o555, uid: 1001, gid: 1001},
		{rel: "home/x", mode: 0o444},
		{rel: "tmp", dir: true, mode: 0o1777},
	}
	mode := func(rel, m string) closure.PermSpec {
		return closure.PermSpec{Path: root, Perm: descriptor.Perm{Regex: "^" + root + "/" + rel + "$", Mode: m}}
	}
	owner := func(regex string, u, g int) closure.PermSpec {
		return closure.PermSpec{Path: root, Perm: descriptor.Perm{Regex: regex, UID: &u, GID: &g}}
	}
	modes := []closure.PermSpec{
		mode(`bin/tool`, "0755"),
		mode(`data`, "0755"),
		mode(`data/sub/b`, "0644"),
		mode(`tmp`, "1777"),
	}
	if diff := cmp.Diff(modes, treePerms(root, entries, false)); diff != "" {
		t.Errorf("treePerms() without owners (-want +got):\n%s", diff)
	}
	withOwners := append(append([]closure.PermSpec(nil), modes...),
		owner("^"+root+"/data(/.*)?$", 1000, 1000),
		owner("^"+root+"/data-other$", 7, 8),
		// home's tree is not all 1001: only home itself.
		owner("^"+root+"/home$", 1001, 1001),
	)
	if diff := cmp.Diff(withOwners, treePerms(root, entries, true)); diff != "" {
		t.Errorf("treePerms() with owners (-want +got):\n%s", diff)
	}
}

// TestExtract writes a merged tree and restores read-only directories last.
func TestExtract(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	a := filepath.Join(store, "aaa-a")
	for _, d := range []string{"bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(a, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(a, "bin", "tool"), []byte("tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(a, "bin", "t")); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(store, "bbb-b")
	if err := os.MkdirAll(filepath.Join(b, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "bin", "tool"), []byte("later"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	attrs := &Attrs{File: "test"}
	if err := materialise(t.Context(), attrs, out, []string{a, b}, false); err != nil {
		t.Fatalf("materialise() = %v", err)
	}
	t.Cleanup(func() { filepath.Walk(out, func(p string, _ os.FileInfo, _ error) error { return os.Chmod(p, 0o755) }) })
	data, err := os.ReadFile(filepath.Join(out, "bin", "tool"))
	if err != nil || string(data) != "later" {
		t.Errorf("bin/tool = %q, %v, want the later path's", data, err)
	}
	for rel, want := range map[string]os.FileMode{"bin": 0o555 | os.ModeDir, "etc": 0o555 | os.ModeDir, "bin/tool": 0o444} {
		fi, err := os.Lstat(filepath.Join(out, rel))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v, want %v", rel, fi.Mode(), err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(out, "bin", "t")); err != nil || l != "tool" {
		t.Errorf("bin/t -> %q, %v, want tool", l, err)
	}
}
