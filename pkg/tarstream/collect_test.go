package tarstream_test

import (
	"archive/tar"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// toRoot relocates store path p to the image root, as copyToRoot does.
func toRoot(p string) descriptor.Path {
	return descriptor.Path{Path: p, Rewrite: &descriptor.Rewrite{Regex: "^" + p, Repl: ""}}
}

func replacements(t *testing.T, paths []descriptor.Path) []tarstream.Replacement {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := tarstream.Replacements(ctx, paths)
	if err != nil {
		t.Fatalf("Replacements() = %v", err)
	}
	return r
}

// TestLaterEntryWins merges two roots that both provide /bin/sh, like
// bashInteractive and dockerTools.binSh: the later path's entry is kept,
// whichever comes first in the sort, and the replacement is reported.
func TestLaterEntryWins(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	bash := mkPath(t, store, "zzz-bash",
		file{name: "bin/bash", data: "#!bash\n", mode: 0o555},
		file{name: "bin/sh", link: "bash"},
		file{name: "share/same", data: "same\n"},
	)
	binSh := mkPath(t, store, "aaa-bin-sh",
		file{name: "bin/sh", link: bash + "/bin/bash"},
		file{name: "share/same", data: "same\n"},
	)
	for _, tc := range []struct {
		name     string
		order    []string
		wantLink string
	}{
		{"binSh last", []string{bash, binSh}, bash + "/bin/bash"},
		{"bash last", []string{binSh, bash}, "bash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths := []descriptor.Path{toRoot(tc.order[0]), toRoot(tc.order[1])}
			stream, shares := write(t, paths)
			entries := readTar(t, stream)
			if diff := cmp.Diff([]string{"bin/", "bin/bash", "bin/sh", "share/", "share/same"}, names(entries)); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if got := find(t, entries, "bin/sh").hdr.Linkname; got != tc.wantLink {
				t.Errorf("bin/sh -> %q, want %q from the later path", got, tc.wantLink)
			}
			if len(shares) != 2 {
				t.Fatalf("%d shares, want 2", len(shares))
			}
			got := replacements(t, paths)
			want := []tarstream.Replacement{
				{Name: "/bin/sh", Old: tc.order[0], New: tc.order[1], OldSource: tc.order[0] + "/bin/sh", NewSource: tc.order[1] + "/bin/sh"},
				{Name: "/share/same", Old: tc.order[0], New: tc.order[1], OldSource: tc.order[0] + "/share/same", NewSource: tc.order[1] + "/share/same", Identical: true},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Replacements() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIdenticalNeedsSameContent: equal size and mode are not enough.
func TestIdenticalNeedsSameContent(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	a := mkPath(t, store, "aaa-a", file{name: "etc/conf", data: "one\n"})
	b := mkPath(t, store, "bbb-b", file{name: "etc/conf", data: "two\n"})
	got := replacements(t, []descriptor.Path{toRoot(a), toRoot(b)})
	if len(got) != 1 || got[0].Identical {
		t.Errorf("Replacements() = %+v, want one replacement of /etc/conf that is not identical", got)
	}
}

// TestDirlinksMerge: a buildEnv-style root whose lib is a symlink to
// another store path's directory merges with a root that has a real lib
// directory, as rsync -k does; with KeepDirlinks it is an error naming
// both paths, and two symlinks then replace each other.
func TestDirlinksMerge(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	target := mkPath(t, store, "ccc-libfoo", file{name: "lib/libfoo.so", data: "foo", mode: 0o555}, file{name: "lib/sub/x", data: "x"})
	env := mkPath(t, store, "aaa-env", file{name: "lib", link: target + "/lib"}, file{name: "bin/env", data: "e"})
	other := mkPath(t, store, "bbb-other", file{name: "lib/libbar.so", data: "bar"}, file{name: "lib/sub/y", data: "y"})
	rel := mkPath(t, store, "ddd-rel", file{name: "lib", link: "../ccc-libfoo/lib"})

	t.Run("merged", func(t *testing.T) {
		for _, order := range [][]string{{env, other}, {other, env}} {
			stream, _ := write(t, []descriptor.Path{toRoot(order[0]), toRoot(order[1])})
			entries := readTar(t, stream)
			want := []string{"bin/", "bin/env", "lib/", "lib/libbar.so", "lib/libfoo.so", "lib/sub/", "lib/sub/x", "lib/sub/y"}
			if diff := cmp.Diff(want, names(entries)); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if e := find(t, entries, "lib/libfoo.so"); string(e.data) != "foo" || e.hdr.Mode != 0o555 {
				t.Errorf("lib/libfoo.so = %q mode %o, want the target's file, 0555", e.data, e.hdr.Mode)
			}
			if e := find(t, entries, "lib/"); e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != 0o555 {
				t.Errorf("lib/ is type %c mode %o, want a 0555 directory", e.hdr.Typeflag, e.hdr.Mode)
			}
		}
	})
	t.Run("relative symlink", func(t *testing.T) {
		stream, _ := write(t, []descriptor.Path{toRoot(rel), toRoot(other)})
		if diff := cmp.Diff([]string{"lib/", "lib/libbar.so", "lib/libfoo.so", "lib/sub/", "lib/sub/x", "lib/sub/y"}, names(readTar(t, stream))); diff != "" {
			t.Errorf("names (-want +got):\n%s", diff)
		}
	})
	t.Run("two symlinks merge", func(t *testing.T) {
		stream, _ := write(t, []descriptor.Path{toRoot(env), toRoot(rel)})
		entries := readTar(t, stream)
		if diff := cmp.Diff([]string{"bin/", "bin/env", "lib/", "lib/libfoo.so", "lib/sub/", "lib/sub/x"}, names(entries)); diff != "" {
			t.Errorf("names (-want +got):\n%s", diff)
		}
	})
	t.Run("alone stays a symlink", func(t *testing.T) {
		stream, _ := write(t, []descriptor.Path{toRoot(env)})
		if e := find(t, readTar(t, stream), "lib"); e.hdr.Typeflag != tar.TypeSymlink {
			t.Errorf("lib is type %c, want the symlink: nothing collides with it", e.hdr.Typeflag)
		}
	})
	t.Run("keepDirlinks against a directory", func(t *testing.T) {
		keep := toRoot(env)
		keep.KeepDirlinks = true
		checkErr(t, writeErr(t, []descriptor.Path{keep, toRoot(other)}), tarstream.ErrCollision, env, other, "/lib", "a symlink", "a directory")
	})
	t.Run("keepDirlinks two symlinks", func(t *testing.T) {
		a, b := toRoot(env), toRoot(rel)
		a.KeepDirlinks, b.KeepDirlinks = true, true
		stream, _ := write(t, []descriptor.Path{a, b})
		if e := find(t, readTar(t, stream), "lib"); e.hdr.Linkname != "../ccc-libfoo/lib" {
			t.Errorf("lib -> %q, want the later path's symlink", e.hdr.Linkname)
		}
	})
	t.Run("symlink to a file against a directory", func(t *testing.T) {
		f := mkPath(t, store, "eee-file", file{name: "data", data: "d"}, file{name: "lib", link: "data"})
		checkErr(t, writeErr(t, []descriptor.Path{toRoot(f), toRoot(other)}), tarstream.ErrCollision, f, other, "/lib")
	})
}

// TestMtime sets the entries' time per path; implied parents take the
// time of the path that implies them.
func TestMtime(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	a := mkPath(t, store, "aaa-a", file{name: "f", data: "a"})
	b := mkPath(t, store, "bbb-b", file{name: "g", data: "b"})
	when := int64(1700000000)
	stream, _ := write(t, []descriptor.Path{{Path: a, Mtime: &when}, {Path: b}})
	for _, e := range readTar(t, stream) {
		// b's own entries keep the default; a's, and the parents both
		// need (implied by a, the first), have a's time.
		want := time.Unix(when, 0)
		if strings.HasPrefix(e.hdr.Name, rel(b)) {
			want = time.Unix(1, 0)
		}
		if !e.hdr.ModTime.Equal(want) {
			t.Errorf("%s: mtime %v, want %v", e.hdr.Name, e.hdr.ModTime.Unix(), want.Unix())
		}
	}
	bad := int64(-1)
	checkErr(t, writeErr(t, []descriptor.Path{{Path: a, Mtime: &bad}}), tarstream.ErrBadRule, a, "mtime")
}
