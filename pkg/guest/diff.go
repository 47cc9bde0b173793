package guest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Overlay's extended attributes on the upper directory.
const (
	overlayPrefix = "trusted.overlay."
	overlayOpaque = "trusted.overlay.opaque"
)

// differ turns an overlay upper directory into a layer tar.
type differ struct {
	upper   string
	created time.Time
	tw      *tar.Writer
	// links maps an inode with several names to the first name written.
	links map[uint64]string
	// store lists changes under /nix/store, which are left out.
	store []string
	// skipped lists entries that cannot go in a layer (sockets).
	skipped []string
	entries int
}

// diff writes the changes in upper as a layer tar to w: entries in
// directory order with names sorted bytewise, owners and modes as found,
// times set to created, whiteouts for deletions and opaque markers for
// replaced directories. Changes under /nix/store are left out and listed
// in d.store.
func diff(upper string, created time.Time, w io.Writer) (*differ, error) {
	d := &differ{upper: upper, created: created.UTC().Truncate(time.Second), tw: tar.NewWriter(w), links: map[uint64]string{}}
	if err := d.dir(""); err != nil {
		return d, err
	}
	if err := d.tw.Close(); err != nil {
		return d, fmt.Errorf("writing layer tar: %w", err)
	}
	return d, nil
}

// dir writes the children of the directory rel ("" for the root).
func (d *differ) dir(rel string) error {
	ents, err := os.ReadDir(filepath.Join(d.upper, rel))
	if err != nil {
		return fmt.Errorf("reading changed directory /%s: %w", rel, err)
	}
	// Sorted by the name each entry has in the tar (a deleted "x" is ".wh.x").
	type child struct{ name, key string }
	children := make([]child, len(ents))
	for i, e := range ents {
		children[i] = child{e.Name(), e.Name()}
		if e.Type()&os.ModeCharDevice != 0 {
			if fi, err := e.Info(); err == nil && isWhiteout(fi) {
				children[i].key = whiteoutPrefix + e.Name()
			}
		}
	}
	sort.Slice(children, func(i, j int) bool { return children[i].key < children[j].key })
	for _, c := range children {
		p := path.Join(rel, c.name)
		if p == "nix/store" {
			if err := d.listStore(p); err != nil {
				return err
			}
			continue
		}
		if p == "nix" && !d.hasOtherThanStore(p) {
			if err := d.dir(p); err != nil {
				return err
			}
			continue
		}
		if err := d.entry(p); err != nil {
			return err
		}
	}
	return nil
}

// hasOtherThanStore tells whether the upper /nix has changes besides /nix/store,
// or is itself a new or opaque directory worth keeping.
func (d *differ) hasOtherThanStore(rel string) bool {
	ents, err := os.ReadDir(filepath.Join(d.upper, rel))
	if err != nil {
		return true
	}
	for _, e := range ents {
		if e.Name() != "store" {
			return true
		}
	}
	return false
}

// listStore records the changes under /nix/store without writing them.
func (d *differ) listStore(rel string) error {
	return filepath.WalkDir(filepath.Join(d.upper, rel), func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(d.upper, p)
		if e.IsDir() {
			if r != rel && isOpaque(p) {
				d.store = append(d.store, "/"+r+" (replaced)")
			}
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if isWhiteout(fi) {
			d.store = append(d.store, "/"+r+" (deleted)")
		} else {
			d.store = append(d.store, "/"+r)
		}
		return nil
	})
}

func isWhiteout(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && fi.Mode()&os.ModeDevice != 0 && st.Rdev == 0
}

func isOpaque(p string) bool {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(p, overlayOpaque, buf)
	return err == nil && n >= 1 && buf[0] == 'y'
}

// entry writes the upper entry rel (and, for a directory, what is in it).
func (d *differ) entry(rel string) error {
	full := filepath.Join(d.upper, rel)
	fi, err := os.Lstat(full)
	if err != nil {
		return fmt.Errorf("reading changed file /%s: %w", rel, err)
	}
	if isWhiteout(fi) {
		dir, base := path.Split(rel)
		return d.write(&tar.Header{Name: dir + whiteoutPrefix + base, Typeflag: tar.TypeReg}, nil)
	}
	st := fi.Sys().(*syscall.Stat_t)
	hdr := &tar.Header{
		Name: rel,
		Mode: int64(st.Mode & 0o7777),
		Uid:  int(st.Uid),
		Gid:  int(st.Gid),
	}
	if err := d.xattrs(full, hdr); err != nil {
		return fmt.Errorf("reading extended attributes of /%s: %w", rel, err)
	}
	switch fi.Mode().Type() {
	case os.ModeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
		if err := d.write(hdr, nil); err != nil {
			return err
		}
		if isOpaque(full) {
			if err := d.write(&tar.Header{Name: rel + "/" + opaqueWhiteout, Typeflag: tar.TypeReg}, nil); err != nil {
				return err
			}
		}
		return d.dir(rel)
	case os.ModeSymlink:
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("reading changed symlink /%s: %w", rel, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return d.write(hdr, nil)
	case os.ModeNamedPipe:
		hdr.Typeflag = tar.TypeFifo
		return d.write(hdr, nil)
	case os.ModeDevice, os.ModeDevice | os.ModeCharDevice:
		hdr.Typeflag = tar.TypeBlock
		if fi.Mode()&os.ModeCharDevice != 0 {
			hdr.Typeflag = tar.TypeChar
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		return d.write(hdr, nil)
	case os.ModeSocket:
		d.skipped = append(d.skipped, "/"+rel)
		return nil
	case 0:
		if st.Nlink > 1 {
			if first, ok := d.links[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				hdr.PAXRecords = nil
				return d.write(hdr, nil)
			}
			d.links[st.Ino] = rel
		}
		f, err := os.Open(full)
		if err != nil {
			return fmt.Errorf("reading changed file /%s: %w", rel, err)
		}
		defer f.Close()
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		return d.write(hdr, f)
	default:
		return fmt.Errorf("changed file /%s has unsupported type %v", rel, fi.Mode().Type())
	}
}

// xattrs copies the entry's extended attributes, except overlay's own,
// into hdr as pax records.
func (d *differ) xattrs(p string, hdr *tar.Header) error {
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(string(bytes.TrimRight(buf[:size], "\x00")), "\x00") {
		if name == "" || strings.HasPrefix(name, overlayPrefix) {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return err
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(p, name, val); err != nil {
			return err
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+name] = string(val[:n])
	}
	return nil
}

// write writes one entry with the layer's time and, for a regular file,
// exactly hdr.Size bytes of content.
func (d *differ) write(hdr *tar.Header, content io.Reader) error {
	hdr.ModTime = d.created
	if hdr.PAXRecords != nil {
		hdr.Format = tar.FormatPAX
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing layer tar entry %s: %w", hdr.Name, err)
	}
	if content != nil {
		n, err := io.CopyN(d.tw, content, hdr.Size)
		if err != nil {
			return fmt.Errorf("writing layer tar entry %s (%d of %d bytes): %w", hdr.Name, n, hdr.Size, err)
		}
	}
	d.entries++
	return nil
}
