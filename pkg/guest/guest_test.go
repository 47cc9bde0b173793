package guest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/nixoci/nixoci/tests/testenv"
)

// requireRoot skips outside CI and fails under CI=true when not root:
// chroot, mknod and trusted.* xattrs need it.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "the guest's chroot, mknod and trusted xattrs")
}

type entry struct {
	hdr  tar.Header
	body string
}

func mkTar(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}}
}

func file(name, body string, mode int64, uid int) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Uid: uid, Gid: uid}, body: body}
}

func TestApplyTar(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	// A unique name, so the test can check nothing lands outside root.
	lib := "nixoci-guest-test-" + filepath.Base(root) + ".so"
	layers := [][]entry{{
		dir("usr/", 0o755), dir("usr/lib/", 0o755),
		{hdr: tar.Header{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "/usr/lib"}},
		dir("etc/", 0o755),
		file("etc/a", "a", 0o640, 5),
		dir("etc/sub/", 0o700),
		file("etc/sub/x", "x", 0o4755, 0),
		dir("keep/", 0o755), file("keep/1", "1", 0o644, 0), file("keep/2", "2", 0o644, 0),
		{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
		file("replaced", "a file", 0o644, 0),
	}, {
		file("lib/"+lib, "so", 0o755, 0),
		file("etc/.wh.a", "", 0, 0),
		file("keep/0", "0", 0o644, 0),
		file("keep/.wh..wh..opq", "", 0, 0),
		file("keep/3", "3", 0o644, 0),
		{hdr: tar.Header{Name: "etc/sub/y", Typeflag: tar.TypeLink, Linkname: "etc/sub/x"}},
		dir("replaced/", 0o711),
		file("../../escape", "no", 0o644, 0),
	}}
	for i, l := range layers {
		data := mkTar(t, l)
		err := inRoot(root, func() error {
			_, err := applyTar(bytes.NewReader(data), "layer")
			return err
		})
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join("/usr/lib", lib)); err == nil {
		os.Remove(filepath.Join("/usr/lib", lib))
		t.Fatalf("the absolute symlink /lib was followed outside the root")
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/lib", lib)); err != nil || string(b) != "so" {
		t.Errorf("lib/%s through the symlink: %q, %v", lib, b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/a")); !os.IsNotExist(err) {
		t.Errorf("etc/a survived its whiteout: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "keep"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"0", "3"}, names); diff != "" {
		t.Errorf("keep/ after the opaque whiteout (-want +got):\n%s", diff)
	}
	var x, y unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "etc/sub/x"), &x); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(root, "etc/sub/y"), &y); err != nil {
		t.Fatal(err)
	}
	if x.Ino != y.Ino || x.Mode&0o7777 != 0o4755 {
		t.Errorf("etc/sub/x mode %o inode %d, y inode %d: want setuid 4755 and a hard link", x.Mode&0o7777, x.Ino, y.Ino)
	}
	var sub unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "etc/sub"), &sub); err != nil || sub.Mode&0o777 != 0o700 {
		t.Errorf("etc/sub mode %o (%v), want 0700", sub.Mode&0o777, err)
	}
	var fifo, rep unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "fifo"), &fifo); err != nil || fifo.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %o, %v", fifo.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(root, "replaced"), &rep); err != nil || rep.Mode&unix.S_IFMT != unix.S_IFDIR || rep.Mode&0o777 != 0o711 {
		t.Errorf("replaced: mode %o, %v, want a 0711 directory", rep.Mode, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "escape")); err != nil || string(b) != "no" {
		t.Errorf("../../escape should land at the root as /escape: %q, %v", b, err)
	}
	if err := unix.Lstat(filepath.Join(root, "etc/a"), &x); err == nil {
		t.Errorf("etc/a exists")
	}
}

// mkUpper builds an overlay upper directory by hand.
func mkUpper(t *testing.T, withNixVar bool) string {
	t.Helper()
	up := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "opq", "nix/store/abc-x/sub", "data"} {
		must(os.MkdirAll(filepath.Join(up, d), 0o755))
	}
	must(os.Chmod(filepath.Join(up, "data"), 0o750))
	must(os.Chown(filepath.Join(up, "data"), 1000, 1000))
	must(os.WriteFile(filepath.Join(up, "etc/motd"), []byte("hi\n"), 0o644))
	must(unix.Mknod(filepath.Join(up, "etc/old"), unix.S_IFCHR, 0))
	must(unix.Mknod(filepath.Join(up, "gone"), unix.S_IFCHR, 0))
	if err := unix.Setxattr(filepath.Join(up, "opq"), overlayOpaque, []byte("y"), 0); err != nil {
		t.Skipf("trusted xattrs are not supported here: %v", err)
	}
	must(os.WriteFile(filepath.Join(up, "opq/new"), []byte("new"), 0o600))
	must(os.WriteFile(filepath.Join(up, "nix/store/abc-x/sub/f"), []byte("junk"), 0o644))
	must(unix.Mknod(filepath.Join(up, "nix/store/deleted-y"), unix.S_IFCHR, 0))
	must(os.WriteFile(filepath.Join(up, "h1"), []byte("linked"), 0o644))
	must(os.Link(filepath.Join(up, "h1"), filepath.Join(up, "h2")))
	must(os.Symlink("/target", filepath.Join(up, "s")))
	must(unix.Setxattr(filepath.Join(up, "etc/motd"), "user.note", []byte("v"), 0))
	if withNixVar {
		must(os.MkdirAll(filepath.Join(up, "nix/var"), 0o755))
	}
	return up
}

func TestDiff(t *testing.T) {
	requireRoot(t)
	created := time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC)
	tests := []struct {
		name       string
		withNixVar bool
		want       []string
	}{
		{"store only", false, []string{"data/", "etc/", "etc/.wh.old", "etc/motd", ".wh.gone", "h1", "h2", "opq/", "opq/.wh..wh..opq", "opq/new", "s"}},
		{"nix/var too", true, []string{"data/", "etc/", "etc/.wh.old", "etc/motd", ".wh.gone", "h1", "h2", "nix/", "nix/var/", "opq/", "opq/.wh..wh..opq", "opq/new", "s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := mkUpper(t, tc.withNixVar)
			var buf bytes.Buffer
			d, err := diff(up, created, &buf)
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(&buf)
			var names []string
			hdrs := map[string]*tar.Header{}
			bodies := map[string]string{}
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(tr)
				names = append(names, h.Name)
				hdrs[h.Name], bodies[h.Name] = h, string(b)
				if !h.ModTime.Equal(created.Truncate(time.Second)) {
					t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, created.Truncate(time.Second))
				}
			}
			// Root-level entries sort by their tar name: ".wh.gone" first.
			want := append([]string(nil), tc.want...)
			sortLike(want)
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if d.entries != len(names) {
				t.Errorf("differ counted %d entries, the tar has %d", d.entries, len(names))
			}
			if h := hdrs["data/"]; h == nil || h.Uid != 1000 || h.Gid != 1000 || h.Mode != 0o750 {
				t.Errorf("data/ = %+v, want 1000:1000 0750", h)
			}
			if h := hdrs["h2"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "h1" {
				t.Errorf("h2 = %+v, want a hard link to h1", h)
			}
			if h := hdrs["s"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/target" {
				t.Errorf("s = %+v, want a symlink to /target", h)
			}
			if h := hdrs["etc/motd"]; h == nil || h.PAXRecords["SCHILY.xattr.user.note"] != "v" || bodies["etc/motd"] != "hi\n" {
				t.Errorf("etc/motd = %+v %q, want its user.note xattr and content", h, bodies["etc/motd"])
			}
			for n, h := range hdrs {
				for k := range h.PAXRecords {
					if strings.Contains(k, "trusted.overlay") {
						t.Errorf("%s carries overlay's xattr %s", n, k)
					}
				}
			}
			if diff := cmp.Diff([]string{"/nix/store/abc-x/sub/f", "/nix/store/deleted-y (deleted)"}, d.store); diff != "" {
				t.Errorf("store writes (-want +got):\n%s", diff)
			}
		})
	}
}

// sortLike orders names as the differ writes them: directory by directory,
// children sorted by tar name.
func sortLike(names []string) {
	key := func(n string) string { return strings.TrimSuffix(n, "/") }
	// Insertion sort comparing path components.
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && less(key(names[j]), key(names[j-1])); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

func less(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

func TestTail(t *testing.T) {
	tl := &tail{max: 10}
	for _, s := range []string{"hello ", "world", ", and more"} {
		if _, err := tl.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tl.buf.String(); got != ", and more" || tl.dropped != 11 {
		t.Errorf("tail = %q dropped %d, want %q dropped 11", got, tl.dropped, ", and more")
	}
}
