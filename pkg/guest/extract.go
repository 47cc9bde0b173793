package guest

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// inRoot runs fn with the process's root directory set to root, so that
// absolute symlinks in the tree resolve inside it, and then returns to the
// real root through a descriptor of it kept open.
func inRoot(root string, fn func() error) (err error) {
	real, err := os.Open("/")
	if err != nil {
		return fmt.Errorf("opening /: %w", err)
	}
	defer real.Close()
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("entering %s: %w", root, err)
	}
	defer func() {
		if ferr := unix.Fchdir(int(real.Fd())); ferr != nil {
			panic(fmt.Sprintf("leaving %s: %v", root, ferr))
		}
		if cerr := unix.Chroot("."); cerr != nil {
			panic(fmt.Sprintf("leaving %s: %v", root, cerr))
		}
		_ = unix.Chdir("/")
	}()
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("entering %s: %w", root, err)
	}
	return fn()
}

// applyTar unpacks one layer tar into the current root, applying OCI
// whiteouts against what earlier layers put there. name is used in errors.
func applyTar(r io.Reader, name string) (int, error) {
	tr := tar.NewReader(r)
	// Entries of this layer, which its own opaque whiteouts do not remove.
	mine := map[string]bool{}
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading %s: %w", name, err)
		}
		p := path.Clean("/" + hdr.Name)
		if p == "/" {
			continue
		}
		dir, base := path.Split(p)
		switch {
		case base == opaqueWhiteout:
			err = clearDir(dir, mine)
		case strings.HasPrefix(base, whiteoutPrefix):
			err = os.RemoveAll(path.Join(dir, base[len(whiteoutPrefix):]))
		default:
			err = create(p, hdr, tr)
			mine[p] = true
		}
		if err != nil {
			return n, fmt.Errorf("unpacking %s from %s: %w", p, name, err)
		}
		n++
	}
}

// clearDir removes dir's children that the current layer did not create.
func clearDir(dir string, keep map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// create makes the entry hdr describes at p, replacing what is there
// unless both are directories, and sets its owner, mode, xattrs and times.
func create(p string, hdr *tar.Header, r io.Reader) error {
	if err := os.MkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	if fi, err := os.Lstat(p); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case tar.TypeReg: // archive/tar reports old TypeRegA entries as TypeReg
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case tar.TypeSymlink:
		return finish(p, hdr, os.Symlink(hdr.Linkname, p), true)
	case tar.TypeLink:
		// A hard link shares its target's owner, mode and times.
		return os.Link(path.Clean("/"+hdr.Linkname), p)
	case tar.TypeChar:
		return finish(p, hdr, unix.Mknod(p, unix.S_IFCHR|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))), false)
	case tar.TypeBlock:
		return finish(p, hdr, unix.Mknod(p, unix.S_IFBLK|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))), false)
	case tar.TypeFifo:
		return finish(p, hdr, unix.Mkfifo(p, mode), false)
	default:
		// Other types (global pax headers, sparse files of old GNU tars)
		// have no place in a root tree.
		return nil
	}
	return finish(p, hdr, nil, false)
}

// finish sets owner, mode, xattrs and times of a created entry.
func finish(p string, hdr *tar.Header, err error, symlink bool) error {
	if err != nil {
		return err
	}
	if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if !symlink {
		// After chown, which clears set-id bits.
		if err := unix.Chmod(p, uint32(hdr.Mode)&0o7777); err != nil {
			return err
		}
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			// Best effort: tmpfs refuses some namespaces.
			_ = unix.Lsetxattr(p, name, []byte(v), 0)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}
