package vm

import (
	"fmt"
	"io"
	"path"
	"strings"
)

// cpioWriter writes a "newc" cpio archive, the format the kernel unpacks
// as an initramfs. Parent directories are added on first use.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCpio(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

// File modes of the newc header.
const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func (c *cpioWriter) header(name string, mode, size, rdevMajor, rdevMinor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	_, c.err = c.w.Write(buf)
}

func pad4(n int) int { return (4 - n%4) % 4 }

// parents adds the directories above name that were not added yet.
func (c *cpioWriter) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.parents(dir)
	c.header(dir, cpioDir|0o755, 0, 0, 0)
	c.dirs[dir] = true
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string) {
	name = strings.TrimPrefix(name, "/")
	if c.dirs[name] {
		return
	}
	c.parents(name)
	c.header(name, cpioDir|0o755, 0, 0, 0)
	c.dirs[name] = true
}

// File adds a regular file with the content of r (size bytes).
func (c *cpioWriter) File(name string, perm uint32, r io.Reader, size int64) {
	name = strings.TrimPrefix(name, "/")
	if size > 0xffffffff {
		c.err = fmt.Errorf("adding %s to the initramfs: %d bytes is over the cpio limit of 4 GiB", name, size)
		return
	}
	c.parents(name)
	c.header(name, cpioReg|perm, uint32(size), 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.CopyN(c.w, r, size)
	if err != nil {
		c.err = fmt.Errorf("adding %s to the initramfs (%d of %d bytes): %w", name, n, size, err)
		return
	}
	_, c.err = c.w.Write(make([]byte, pad4(int(size%4))))
}

// Symlink adds a symbolic link.
func (c *cpioWriter) Symlink(name, target string) {
	name = strings.TrimPrefix(name, "/")
	c.parents(name)
	c.header(name, cpioLink|0o777, uint32(len(target)), 0, 0)
	if c.err == nil {
		_, c.err = io.WriteString(c.w, target+strings.Repeat("\x00", pad4(len(target))))
	}
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	name = strings.TrimPrefix(name, "/")
	c.parents(name)
	c.header(name, cpioChr|perm, 0, major, minor)
}

// Close writes the trailer and returns the first error met.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}
