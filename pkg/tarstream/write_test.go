package tarstream_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

var epochPlusOne = time.Unix(1, 0)

func sampleStore(t *testing.T) (store, hello, lib string) {
	t.Helper()
	store = filepath.Join(t.TempDir(), "store")
	hello = mkPath(t, store, "aaa-hello",
		file{name: "bin/hello", data: "#!/bin/sh\necho hello\n", mode: 0o755},
		file{name: "share/doc/README", data: strings.Repeat("read me\n", 100)},
		file{name: "share/empty", dir: true},
		file{name: "lib", link: "../bbb-lib/lib"},
		file{name: "share/zero", data: ""},
	)
	lib = mkPath(t, store, "bbb-lib",
		file{name: "lib/libfoo.so", data: strings.Repeat("\x7fELF", 1000), mode: 0o555},
		file{name: "include/foo.h", data: "int foo(void);\n", mode: 0o600},
		file{name: "include/Foo.h~nix~case~hack~1", data: "int Foo(void);\n"},
	)
	return store, hello, lib
}

// TestLayout checks the stream against an independent walk of the tree.
func TestLayout(t *testing.T) {
	_, hello, lib := sampleStore(t)
	stream, _ := write(t, []descriptor.Path{{Path: lib}, {Path: hello}})
	entries := readTar(t, stream)

	// Expected names: every file of both paths plus every ancestor, once.
	want := map[string]bool{}
	for _, root := range []string{hello, lib} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := strings.Replace(rel(p), "~nix~case~hack~1", "", 1)
			if d.IsDir() {
				name += "/"
			}
			want[name] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for dir := path.Dir(rel(root)); dir != "."; dir = path.Dir(dir) {
			want[dir+"/"] = true
		}
	}
	got := map[string]bool{}
	for _, e := range entries {
		if got[e.hdr.Name] {
			t.Errorf("entry %q appears twice", e.hdr.Name)
		}
		got[e.hdr.Name] = true
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entry names (-want +got):\n%s", diff)
	}

	seen := map[string]bool{}
	for i, e := range entries {
		h := e.hdr
		name := strings.TrimSuffix(h.Name, "/")
		t.Run(h.Name, func(t *testing.T) {
			if i > 0 {
				prev := strings.TrimSuffix(entries[i-1].hdr.Name, "/")
				if prev >= name {
					t.Errorf("entry %q follows %q: not in bytewise order", name, prev)
				}
			}
			if dir := path.Dir(name); dir != "." && !seen[dir] {
				t.Errorf("entry %q comes before its parent %q", name, dir)
			}
			if strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "./") {
				t.Errorf("name %q is not relative", h.Name)
			}
			if !h.ModTime.Equal(epochPlusOne) {
				t.Errorf("mtime = %v, want %v", h.ModTime, epochPlusOne)
			}
			if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
				t.Errorf("owner = %d:%d %s:%s, want 0:0 root:root", h.Uid, h.Gid, h.Uname, h.Gname)
			}
			if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || len(h.PAXRecords) != 0 {
				t.Errorf("header has atime/ctime/pax records (xattrs would be pax records): %+v", h)
			}
			if h.Format != tar.FormatUSTAR {
				t.Errorf("format = %v, want USTAR for a short name", h.Format)
			}
			src := "/" + name
			if name == rel(lib)+"/include/Foo.h" {
				src += "~nix~case~hack~1"
			}
			fi, err := os.Lstat(src)
			if err != nil {
				t.Fatal(err)
			}
			var wantType byte
			var wantMode int64
			switch {
			case fi.IsDir():
				wantType, wantMode = tar.TypeDir, 0o555
			case fi.Mode()&fs.ModeSymlink != 0:
				wantType, wantMode = tar.TypeSymlink, 0o777
				target, _ := os.Readlink(src)
				if h.Linkname != target {
					t.Errorf("link target = %q, want %q", h.Linkname, target)
				}
			case fi.Mode()&0o111 != 0:
				wantType, wantMode = tar.TypeReg, 0o555
			default:
				wantType, wantMode = tar.TypeReg, 0o444
			}
			if h.Typeflag != wantType || h.Mode != wantMode {
				t.Errorf("type, mode = %c, %o; want %c, %o", h.Typeflag, h.Mode, wantType, wantMode)
			}
			if wantType == tar.TypeReg {
				content, _ := os.ReadFile(src)
				if !bytes.Equal(e.data, content) {
					t.Errorf("content differs from %s", src)
				}
			}
		})
		seen[name] = true
	}
}

// TestShares recomputes shares and fingerprints from the entry boundaries
// found by archive/tar.
func TestShares(t *testing.T) {
	_, hello, lib := sampleStore(t)
	var observed []tarstream.Entry
	stream, shares := write(t, []descriptor.Path{{Path: hello}, {Path: lib}},
		tarstream.WithObserver(func(e tarstream.Entry) { observed = append(observed, e) }))
	entries := readTar(t, stream)
	if len(shares) != 2 {
		t.Fatalf("Write() returned %d shares, want 2", len(shares))
	}
	if len(observed) != len(entries) {
		t.Fatalf("observer saw %d entries, tar has %d", len(observed), len(entries))
	}
	roots := []string{rel(hello), rel(lib)}
	hashes := []*bytes.Buffer{{}, {}}
	fps := [][]byte{nil, nil}
	for i, e := range entries {
		owner := 0 // implied parents: the first path that needs them
		if strings.HasPrefix(e.hdr.Name, roots[1]) {
			owner = 1
		}
		b := stream[e.start:e.end]
		hashes[owner].Write(b)
		fps[owner] = binary.BigEndian.AppendUint32(fps[owner], crc(b))
		o := observed[i]
		if o.Path != owner || o.Name != e.hdr.Name || o.Type != e.hdr.Typeflag || o.Mode != e.hdr.Mode || o.Size != e.hdr.Size || o.Fingerprint != crc(b) {
			t.Errorf("observed %+v, want path %d and header %s, fingerprint %08x", o, owner, e.hdr.Name, crc(b))
		}
	}
	for i := range shares {
		want := tarstream.Share{
			Digest:       digest.FromBytes(hashes[i].Bytes()),
			Fingerprints: base64.StdEncoding.EncodeToString(fps[i]),
		}
		if diff := cmp.Diff(want, shares[i]); diff != "" {
			t.Errorf("share %d (-want +got):\n%s", i, diff)
		}
	}
	// The shares cover the whole stream but the end-of-archive blocks.
	if got, want := int64(hashes[0].Len()+hashes[1].Len()), int64(len(stream)-1024); got != want {
		t.Errorf("shares cover %d bytes, want %d", got, want)
	}
}

func TestWithoutShares(t *testing.T) {
	_, hello, _ := sampleStore(t)
	a, shares := write(t, []descriptor.Path{{Path: hello}}, tarstream.WithoutShares())
	b, _ := write(t, []descriptor.Path{{Path: hello}})
	if shares != nil {
		t.Errorf("Write(WithoutShares) shares = %v, want nil", shares)
	}
	if !bytes.Equal(a, b) {
		t.Error("WithoutShares changes the bytes")
	}
}

// TestChunking checks that the output does not depend on chunk boundaries.
func TestChunking(t *testing.T) {
	_, hello, lib := sampleStore(t)
	paths := []descriptor.Path{{Path: hello}, {Path: lib}}
	want, wantShares := write(t, paths)
	for _, size := range []int{1, 7, 512, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			got, gotShares := write(t, paths, tarstream.WithChunkSize(size))
			if !bytes.Equal(got, want) {
				t.Errorf("chunk size %d gives different bytes", size)
			}
			if diff := cmp.Diff(wantShares, gotShares); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRules(t *testing.T) {
	ptr := func(i int) *int { return &i }
	str := func(s string) *string { return &s }
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "ccc-root",
		file{name: "bin/sh", data: "sh", mode: 0o755},
		file{name: "etc/passwd", data: "root:x:0:0::/:/bin/sh\n"},
		file{name: "etc/secret", data: "s", mode: 0o644},
		file{name: "share/doc/a", data: "a"},
		file{name: "share/docs", data: "keep"},
		file{name: "tmp", dir: true},
	)
	tests := []struct {
		name string
		path descriptor.Path
		// want maps tar names to "type mode uid:gid uname:gname"; absent
		// names must not appear.
		want   map[string]string
		absent []string
	}{{
		name: "rewrite to root",
		path: descriptor.Path{Path: root, Rewrite: &descriptor.Rewrite{Regex: "^" + root, Repl: "/"}},
		want: map[string]string{
			"bin/":       "5 555 0:0 root:root",
			"bin/sh":     "0 555 0:0 root:root",
			"etc/passwd": "0 444 0:0 root:root",
			"tmp/":       "5 555 0:0 root:root",
		},
		absent: []string{"", "./", "/", rel(root) + "/"},
	}, {
		name: "rewrite with expansion",
		path: descriptor.Path{Path: root, Rewrite: &descriptor.Rewrite{Regex: "^" + store + "/ccc-(root)", Repl: "/opt/${1}x"}},
		want: map[string]string{
			"opt/":           "5 555 0:0 root:root",
			"opt/rootx/":     "5 555 0:0 root:root",
			"opt/rootx/tmp/": "5 555 0:0 root:root",
		},
		absent: []string{rel(root) + "/"},
	}, {
		name: "ignore drops files and whole directories",
		path: descriptor.Path{Path: root, Rewrite: &descriptor.Rewrite{Regex: "^" + root, Repl: ""}, Ignore: "^/(share/doc|etc/secret)$"},
		want: map[string]string{
			"share/":     "5 555 0:0 root:root",
			"share/docs": "0 444 0:0 root:root",
			"etc/passwd": "0 444 0:0 root:root",
		},
		absent: []string{"share/doc/", "share/doc/a", "etc/secret"},
	}, {
		name: "perms match the source path",
		path: descriptor.Path{
			Path:    root,
			Rewrite: &descriptor.Rewrite{Regex: "^" + root, Repl: "/"},
			Perms: []descriptor.Perm{
				{Regex: "/ccc-root/tmp$", Mode: "1777"},
				{Regex: "/etc/secret$", Mode: "0600", UID: ptr(1000), GID: ptr(100)},
				{Regex: "/bin/sh$", OrMode: "4000", Uname: str("daemon"), Gname: str("wheel")},
				{Regex: "/etc$", UID: ptr(5), Uname: str("five")},
			},
		},
		want: map[string]string{
			"tmp/":       "5 1777 0:0 root:root",
			"etc/secret": "0 600 1000:100 :",
			"bin/sh":     "0 4555 0:0 daemon:wheel",
			"etc/":       "5 555 5:0 five:root",
			"etc/passwd": "0 444 0:0 root:root",
		},
	}, {
		name: "perms on a path without rewrite",
		path: descriptor.Path{Path: root, Perms: []descriptor.Perm{{Regex: "/bin$", Mode: "0700"}}},
		want: map[string]string{
			rel(root) + "/bin/":   "5 700 0:0 root:root",
			rel(root) + "/bin/sh": "0 555 0:0 root:root",
			rel(store) + "/":      "5 555 0:0 root:root",
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream, _ := write(t, []descriptor.Path{tc.path})
			got := map[string]string{}
			for _, e := range readTar(t, stream) {
				h := e.hdr
				got[h.Name] = fmt.Sprintf("%c %o %d:%d %s:%s", h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname)
			}
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("entry %q = %q, want %q", name, got[name], want)
				}
			}
			for _, name := range tc.absent {
				if _, ok := got[name]; ok {
					t.Errorf("entry %q is present, want it left out", name)
				}
			}
		})
	}
}

// TestSharedDirectories checks directories that several paths provide.
func TestSharedDirectories(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	a := mkPath(t, store, "aaa-a", file{name: "bin/a", data: "a"})
	b := mkPath(t, store, "bbb-b", file{name: "bin/b", data: "b"})
	paths := []descriptor.Path{
		{Path: b, Rewrite: &descriptor.Rewrite{Regex: "^" + b, Repl: "/"}, Perms: []descriptor.Perm{{Regex: "/bin$", Mode: "0755"}}},
		{Path: a, Rewrite: &descriptor.Rewrite{Regex: "^" + a, Repl: "/"}},
	}
	stream, _ := write(t, paths)
	entries := readTar(t, stream)
	if diff := cmp.Diff([]string{"bin/", "bin/a", "bin/b"}, names(entries)); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if m := find(t, entries, "bin/").hdr.Mode; m != 0o755 {
		t.Errorf("bin/ mode = %o, want 0755 from the first path", m)
	}
}

func TestLongNames(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	long := strings.Repeat("d", 90) + "/" + strings.Repeat("f", 120)
	target := strings.Repeat("t/", 80)
	root := mkPath(t, store, "eee-long",
		file{name: long, data: "long"},
		file{name: "link", link: target},
	)
	owner := strings.Repeat("u", 40)
	stream, _ := write(t, []descriptor.Path{{Path: root, Perms: []descriptor.Perm{{Regex: "/link$", Uname: &owner}}}})
	entries := readTar(t, stream)
	e := find(t, entries, rel(root)+"/"+long)
	if string(e.data) != "long" || e.hdr.Format != tar.FormatPAX {
		t.Errorf("long name entry: data %q, format %v; want \"long\", PAX", e.data, e.hdr.Format)
	}
	l := find(t, entries, rel(root)+"/link")
	if l.hdr.Linkname != target || l.hdr.Uname != owner {
		t.Errorf("link: target %q uname %q, want %q %q", l.hdr.Linkname, l.hdr.Uname, target, owner)
	}
	if keys := slices.Sorted(mapsKeys(l.hdr.PAXRecords)); !slices.Equal(keys, []string{"linkpath", "uname"}) {
		t.Errorf("pax records = %v, want linkpath and uname only", keys)
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestHardlinkAndCaseHack(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "fff-x",
		file{name: "a", data: "same"},
		file{name: "dir~nix~case~hack~2/File~nix~case~hack~1", data: "case"},
		file{name: "keep~nix~case~hack~", data: "no number, kept"},
	)
	if err := os.Link(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	stream, _ := write(t, []descriptor.Path{{Path: root}})
	entries := readTar(t, stream)
	for _, e := range entries {
		if e.hdr.Typeflag == tar.TypeLink {
			t.Errorf("entry %q is a hard link", e.hdr.Name)
		}
	}
	if b := find(t, entries, rel(root)+"/b"); b.hdr.Typeflag != tar.TypeReg || string(b.data) != "same" {
		t.Errorf("hard link b: type %c data %q, want a regular file with \"same\"", b.hdr.Typeflag, b.data)
	}
	find(t, entries, rel(root)+"/dir/")
	find(t, entries, rel(root)+"/dir/File")
	find(t, entries, rel(root)+"/keep~nix~case~hack~")
}

// TestDeterminism copies a tree, changes what must not matter, and expects
// the same bytes and shares.
func TestDeterminism(t *testing.T) {
	_, hello, lib := sampleStore(t)
	paths := []descriptor.Path{{Path: hello}, {Path: lib}}
	want, wantShares := write(t, paths)

	store2 := filepath.Join(t.TempDir(), "store")
	// A rewrite maps the copy onto the original location, so that names
	// are the same.
	if err := os.CopyFS(store2, os.DirFS(filepath.Dir(hello))); err != nil {
		t.Fatal(err)
	}
	// os.CopyFS does not copy symlinks as links; recreate them.
	link := filepath.Join(store2, "aaa-hello", "lib")
	os.RemoveAll(link)
	if err := os.Symlink("../bbb-lib/lib", link); err != nil {
		t.Fatal(err)
	}
	// Restore the source modes CopyFS dropped (it keeps only the x bits
	// for files), then perturb what must not matter.
	when := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	err := filepath.WalkDir(store2, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if d.IsDir() {
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(p, 1234, 5678); err != nil {
				return err
			}
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Hard-link one file to another with the same content elsewhere.
	dup := filepath.Join(store2, "bbb-lib", "include", "foo.h")
	extra := filepath.Join(t.TempDir(), "foo.h")
	if err := os.Link(dup, extra); err != nil {
		t.Fatal(err)
	}
	orig := filepath.Dir(hello)
	paths2 := []descriptor.Path{
		{Path: filepath.Join(store2, "aaa-hello"), Rewrite: &descriptor.Rewrite{Regex: "^" + store2, Repl: orig}},
		{Path: filepath.Join(store2, "bbb-lib"), Rewrite: &descriptor.Rewrite{Regex: "^" + store2, Repl: orig}},
	}
	got, gotShares := write(t, paths2)
	if !bytes.Equal(got, want) {
		t.Error("the copied, touched tree gives different bytes")
	}
	if diff := cmp.Diff(wantShares, gotShares); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
}

func TestBadInput(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	ok := mkPath(t, store, "aaa-ok", file{name: "bin/x", data: "x"}, file{name: "etc", data: "file"})
	other := mkPath(t, store, "bbb-other", file{name: "bin/x", data: "y"}, file{name: "etc/passwd", data: "p"})
	sock := mkPath(t, store, "ccc-sock")
	l, err := netListenUnix(filepath.Join(sock, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fifo := mkPath(t, store, "ddd-fifo")
	if err := syscall.Mkfifo(filepath.Join(fifo, "f"), 0o644); err != nil {
		t.Fatal(err)
	}
	toRoot := func(p string) *descriptor.Rewrite { return &descriptor.Rewrite{Regex: "^" + p, Repl: "/"} }
	missing := filepath.Join(store, "zzz-gone")
	tests := []struct {
		name  string
		paths []descriptor.Path
		want  error
		says  []string
	}{
		{"missing path", []descriptor.Path{{Path: ok}, {Path: missing}}, tarstream.ErrMissingPath, []string{missing, "garbage-collected", "nix-store --realise"}},
		{"directory against file", []descriptor.Path{{Path: ok, Rewrite: toRoot(ok)}, {Path: other, Rewrite: toRoot(other)}}, tarstream.ErrCollision, []string{ok, other, "/etc", "a directory cannot merge", "keep only one"}},
		{"file over directory", []descriptor.Path{{Path: ok, Rewrite: toRoot(ok), Ignore: "^/bin"}, {Path: other, Rewrite: toRoot(other), Ignore: "^/bin"}}, tarstream.ErrCollision, []string{ok, other, "/etc"}},
		{"socket", []descriptor.Path{{Path: sock}}, tarstream.ErrUnsupportedType, []string{filepath.Join(sock, "s"), "socket"}},
		{"fifo", []descriptor.Path{{Path: fifo}}, tarstream.ErrUnsupportedType, []string{filepath.Join(fifo, "f"), "fifo"}},
		{"escape", []descriptor.Path{{Path: ok, Rewrite: &descriptor.Rewrite{Regex: "^" + ok, Repl: "/../.."}}}, tarstream.ErrEscapesRoot, []string{ok, "/../.."}},
		{"escape relative", []descriptor.Path{{Path: ok, Rewrite: &descriptor.Rewrite{Regex: "^/", Repl: "a/../../"}}}, tarstream.ErrEscapesRoot, []string{ok}},
		{"bad rewrite regex", []descriptor.Path{{Path: ok, Rewrite: &descriptor.Rewrite{Regex: "(", Repl: "/"}}}, tarstream.ErrBadRule, []string{ok, `"("`}},
		{"bad ignore regex", []descriptor.Path{{Path: ok, Ignore: "[a"}}, tarstream.ErrBadRule, []string{ok, `"[a"`}},
		{"bad perms regex", []descriptor.Path{{Path: ok, Perms: []descriptor.Perm{{Regex: "*"}}}}, tarstream.ErrBadRule, []string{ok, `"*"`}},
		{"bad perms mode", []descriptor.Path{{Path: ok, Perms: []descriptor.Perm{{Regex: "x", Mode: "0999"}}}}, tarstream.ErrBadRule, []string{ok, `"0999"`, "octal"}},
		{"bad perms orMode", []descriptor.Path{{Path: ok, Perms: []descriptor.Perm{{Regex: "x", OrMode: "77777"}}}}, tarstream.ErrBadRule, []string{ok, `"77777"`}},
		{"relative path", []descriptor.Path{{Path: "nix/store/x"}}, tarstream.ErrBadRule, []string{"nix/store/x", "absolute"}},
		{"file at root", []descriptor.Path{{Path: filepath.Join(ok, "etc"), Rewrite: &descriptor.Rewrite{Regex: ".*", Repl: "/"}}}, tarstream.ErrBadRule, []string{filepath.Join(ok, "etc"), "root"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, writeErr(t, tc.paths), tc.want, tc.says...)
		})
	}
}

// TestVanishedFile removes a file after the walk: the read error names it.
func TestVanishedFile(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "aaa-x", file{name: "a", data: "a"}, file{name: "b", data: "b"})
	victim := filepath.Join(root, "b")
	var buf bytes.Buffer
	_, err := tarstream.Write(context.Background(), &buf, []descriptor.Path{{Path: root}}, tarstream.WithObserver(func(e tarstream.Entry) {
		if e.Source == filepath.Join(root, "a") {
			os.Remove(victim)
		}
	}))
	checkErr(t, err, tarstream.ErrChanged, victim, root)
}

func TestFileChangedWhileStreaming(t *testing.T) {
	for _, tc := range []struct {
		name, before, after, want string
	}{
		{name: "shrunk", before: "bbbb", after: "b", want: "shorter"},
		{name: "grown", before: "b", after: "bigger", want: "longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "store")
			root := mkPath(t, store, "aaa-x", file{name: "a", data: "a"}, file{name: "b", data: tc.before})
			victim := filepath.Join(root, "b")
			var buf bytes.Buffer
			// Rewrite b once a, which comes before it, has been streamed.
			_, err := tarstream.Write(context.Background(), &buf, []descriptor.Path{{Path: root}}, tarstream.WithObserver(func(e tarstream.Entry) {
				if e.Source == filepath.Join(root, "a") {
					os.WriteFile(victim, []byte(tc.after), 0o644)
				}
			}))
			checkErr(t, err, tarstream.ErrChanged, victim, tc.want)
		})
	}
}

func TestUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "aaa-x", file{name: "secret", data: "s", mode: 0o200})
	var buf bytes.Buffer
	_, err := tarstream.Write(context.Background(), &buf, []descriptor.Path{{Path: root}})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "secret")) || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Write() = %v, want a permission error naming the file", err)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestWriterError(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "aaa-x", file{name: "big", data: strings.Repeat("x", 5<<20)})
	_, err := tarstream.Write(context.Background(), &failWriter{after: 1}, []descriptor.Path{{Path: root}})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Write() = %v, want the writer's error", err)
	}
}

func TestCancel(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "aaa-x", file{name: "a", data: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := tarstream.Write(ctx, &buf, []descriptor.Path{{Path: root}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write(canceled) = %v, want context.Canceled", err)
	}
}

func TestShareDigestIsOfBytes(t *testing.T) {
	// A single path owns every entry: its share is the stream minus the trailer.
	_, hello, _ := sampleStore(t)
	stream, shares := write(t, []descriptor.Path{{Path: hello}})
	want := sha256.Sum256(stream[:len(stream)-1024])
	if shares[0].Digest != digest.NewDigestFromBytes(digest.SHA256, want[:]) {
		t.Errorf("share digest = %s, want sha256 of the stream without its trailer", shares[0].Digest)
	}
}
