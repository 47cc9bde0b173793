package flatten

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// Layer is what Write reads of a layer: its uncompressed tar, a fresh stream
// on every call. pkg/layer's layers have it.
type Layer interface {
	Uncompressed(ctx context.Context) (io.ReadCloser, error)
}

// Whiteout prefixes of the OCI layer format.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
	// metaPrefix marks AUFS metadata (".wh..wh.plnk" and the like), which
	// is never part of the file system.
	metaPrefix = ".wh..wh."
)

// dirTime is the time of directories that no layer has an entry for but
// whose contents are in the image.
var dirTime = time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)

// Write writes the file system that layers make, applied base first, as one
// tar to w. It reads every layer twice: once to work out what survives, once
// to copy it.
//
//   - A whiteout ".wh.NAME" removes NAME (and all below it) of the layers
//     below; an opaque whiteout ".wh..wh..opq" removes every entry the layers
//     below have in its directory. Neither touches entries of its own layer,
//     and neither is written.
//   - An entry replaces the same path of the layers below; a non-directory
//     also removes everything below that path, and a path below a
//     non-directory of a lower layer replaces it with a directory.
//   - A hard link points at the entry its target named when its layer was
//     applied. When that entry is replaced or removed above, the first link
//     to it becomes a regular file with its content and the others link to
//     that file.
//   - Directories come before what they hold; a directory no layer has an
//     entry for is written with mode 0755 and owner root. Entry names have no
//     leading "./" or "/"; the root directory is "./" when a layer has it.
//
// Entries keep their headers (mode, owner, times, extended attributes).
func Write(ctx context.Context, w io.Writer, layers []Layer) error {
	fs := newTree()
	for i, l := range layers {
		if err := fs.scan(ctx, i, l); err != nil {
			return err
		}
	}
	plan, err := fs.plan()
	if err != nil {
		return err
	}
	out := &writer{tw: tar.NewWriter(w), fs: fs, plan: plan, emitted: map[string]bool{}}
	if fs.root.hdr != nil {
		if err := out.writeDir(fs.root); err != nil {
			return err
		}
	}
	for i, l := range layers {
		if err := out.copyLayer(ctx, i, l); err != nil {
			return err
		}
	}
	if err := out.tw.Close(); err != nil {
		return fmt.Errorf("finishing the tar: %w", err)
	}
	return nil
}

// entryID names an entry: its layer and its position in that layer's tar.
type entryID struct{ layer, index int }

func (a entryID) before(b entryID) bool {
	return a.layer < b.layer || a.layer == b.layer && a.index < b.index
}

// node is a path of the file system as built so far.
type node struct {
	path     string
	hdr      *tar.Header // nil: a directory implied by what is below it
	id       entryID     // the entry that made it
	layer    int         // the layer that made or implied it
	children map[string]*node
	// root is, for a hard link, the entry its content is: the first
	// non-link entry of the chain of links.
	root *entryID
}

func (n *node) isDir() bool { return n.hdr == nil || n.hdr.Typeflag == tar.TypeDir }

// record is a non-directory entry as read, kept for hard links.
type record struct {
	path string
	hdr  *tar.Header
}

type tree struct {
	root    *node
	records map[entryID]record
}

func newTree() *tree {
	return &tree{root: &node{children: map[string]*node{}, layer: -1}, records: map[entryID]record{}}
}

// clean is an entry name as a path without "./" or "/" in front ("" for the root).
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// scan applies layer i's entries to the tree.
func (t *tree) scan(ctx context.Context, i int, l Layer) error {
	return eachEntry(ctx, i, l, func(j int, h *tar.Header, _ io.Reader) error {
		return t.apply(entryID{i, j}, h)
	})
}

// eachEntry calls fn for every entry of layer i's tar, in order, with its
// index, header and content; fn's errors are returned naming the layer.
func eachEntry(ctx context.Context, i int, l Layer, fn func(j int, h *tar.Header, content io.Reader) error) error {
	rc, err := l.Uncompressed(ctx)
	if err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for j := 0; ; j++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %d: reading its tar: %w", i, err)
		}
		if err := fn(j, h, tr); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
}

// lookup returns the node at p, or nil.
func (t *tree) lookup(p string) *node {
	n := t.root
	if p == "" {
		return n
	}
	for _, part := range strings.Split(p, "/") {
		if n.children == nil {
			return nil
		}
		if n = n.children[part]; n == nil {
			return nil
		}
	}
	return n
}

// dir returns the directory node at p, creating implied directories and
// replacing non-directories of the way by them.
func (t *tree) dir(p string, layer int) *node {
	n := t.root
	if p == "" {
		return n
	}
	sofar := ""
	for _, part := range strings.Split(p, "/") {
		sofar = path.Join(sofar, part)
		c := n.children[part]
		if c == nil || !c.isDir() {
			c = &node{path: sofar, layer: layer, children: map[string]*node{}}
			n.children[part] = c
		}
		n = c
	}
	return n
}

func (t *tree) apply(id entryID, h *tar.Header) error {
	p := clean(h.Name)
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if strings.HasPrefix(base, whiteoutPrefix) {
		parent := t.lookup(dir)
		if parent == nil || !parent.isDir() {
			return nil
		}
		switch {
		case base == opaqueWhiteout:
			prune(parent, id.layer)
		case strings.HasPrefix(base, metaPrefix):
		default:
			if c := parent.children[strings.TrimPrefix(base, whiteoutPrefix)]; c != nil {
				remove(parent, c, id.layer)
			}
		}
		return nil
	}
	if p == "" {
		if h.Typeflag == tar.TypeDir {
			t.root.hdr, t.root.id = h, id
		}
		return nil
	}
	parent := t.dir(dir, id.layer)
	old := parent.children[base]
	n := &node{path: p, hdr: h, id: id, layer: id.layer}
	switch h.Typeflag {
	case tar.TypeDir:
		n.children = map[string]*node{}
		if old != nil && old.isDir() {
			n.children = old.children
		}
	case tar.TypeLink:
		target := t.lookup(clean(h.Linkname))
		if target == nil || target.hdr == nil || target.isDir() {
			return fmt.Errorf("hard link %s points to %s, which this layer and the layers below do not hold as a file", p, h.Linkname)
		}
		root := target.id
		if target.root != nil {
			root = *target.root
		}
		n.root = &root
		t.records[id] = record{p, h}
	default:
		t.records[id] = record{p, h}
	}
	parent.children[base] = n
	return nil
}

// newer tells whether n or anything below it was made by layer or above.
func newer(n *node, layer int) bool {
	if n.layer >= layer {
		return true
	}
	for _, c := range n.children {
		if newer(c, layer) {
			return true
		}
	}
	return false
}

// prune removes from below dir everything the layers below layer made.
func prune(dir *node, layer int) {
	for name, c := range dir.children {
		if c.layer < layer && !newer(c, layer) {
			delete(dir.children, name)
			continue
		}
		if c.layer < layer {
			// Only what this layer put below it stays.
			c.hdr, c.layer, c.root = nil, layer, nil
		}
		prune(c, layer)
	}
}

// remove applies a whiteout of c, a child of parent, in layer.
func remove(parent, c *node, layer int) {
	if !newer(c, layer) {
		delete(parent.children, path.Base(c.path))
		return
	}
	if c.layer < layer {
		c.hdr, c.layer, c.root = nil, layer, nil
	}
	prune(c, layer)
}

// action is what the copy pass does with an entry.
type action struct {
	// write: the entry as it is (links rewritten to linkname).
	write    bool
	linkname string
	// promote: at this (removed) entry, write these links' paths as
	// files with its content, the first as a copy and the rest as links to it.
	promote []string
}

// plan works out, from the final tree, what the copy pass writes.
func (t *tree) plan() (map[entryID]*action, error) {
	plan := map[entryID]*action{}
	get := func(id entryID) *action {
		a := plan[id]
		if a == nil {
			a = &action{}
			plan[id] = a
		}
		return a
	}
	survivors := map[entryID]*node{}
	var links []*node
	var walk func(n *node)
	walk = func(n *node) {
		if n.hdr != nil && n != t.root {
			survivors[n.id] = n
			if n.root != nil {
				links = append(links, n)
			}
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(t.root)
	for id, n := range survivors {
		if n.root == nil {
			get(id).write = true
		}
	}
	// Links in copy order, so the first link to a removed entry is the one
	// that becomes a file.
	sort.Slice(links, func(i, j int) bool { return links[i].id.before(links[j].id) })
	promoted := map[entryID]string{}
	for _, l := range links {
		root := *l.root
		if r, ok := survivors[root]; ok {
			a := get(l.id)
			a.write, a.linkname = true, r.path
			continue
		}
		if _, ok := t.records[root]; !ok {
			return nil, fmt.Errorf("hard link %s: its target entry was not recorded", l.path)
		}
		if first, ok := promoted[root]; ok {
			a := get(l.id)
			a.write, a.linkname = true, first
			continue
		}
		promoted[root] = l.path
		a := get(root)
		a.promote = append(a.promote, l.path)
	}
	return plan, nil
}

// writer is the copy pass.
type writer struct {
	tw      *tar.Writer
	fs      *tree
	plan    map[entryID]*action
	emitted map[string]bool
}

// copyLayer writes what survives of layer i, in the layer's order.
func (w *writer) copyLayer(ctx context.Context, i int, l Layer) error {
	return eachEntry(ctx, i, l, func(j int, h *tar.Header, content io.Reader) error {
		a := w.plan[entryID{i, j}]
		if a == nil {
			return nil
		}
		p := clean(h.Name)
		if a.write {
			if err := w.write(p, h, a.linkname, content); err != nil {
				return err
			}
		}
		for _, target := range a.promote {
			if err := w.write(target, h, "", content); err != nil {
				return err
			}
		}
		return nil
	})
}

// write writes one entry at path p with h's metadata: a hard link to
// linkname when that is set, else h's own type with content from r.
func (w *writer) write(p string, h *tar.Header, linkname string, r io.Reader) error {
	if w.emitted[p] {
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		return fmt.Errorf("%s would be written twice", p)
	}
	if err := w.parents(p); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeDir {
		return w.writeDir(w.fs.lookup(p))
	}
	out := header(h, p)
	if linkname != "" {
		out.Typeflag, out.Linkname, out.Size = tar.TypeLink, linkname, 0
	}
	if err := w.tw.WriteHeader(out); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	w.emitted[p] = true
	if out.Typeflag != tar.TypeReg || out.Size == 0 {
		return nil
	}
	n, err := io.Copy(w.tw, io.LimitReader(r, out.Size))
	if err != nil {
		return fmt.Errorf("copying %s: %w", p, err)
	}
	if n != out.Size {
		return fmt.Errorf("copying %s: the layer changed between the two reads (%d bytes, %d before)", p, n, out.Size)
	}
	return nil
}

// parents writes the directories above p that are not written yet, from
// their final entries (or as implied directories).
func (w *writer) parents(p string) error {
	dir := path.Dir(p)
	if dir == "." || dir == "/" || w.emitted[dir] {
		return nil
	}
	if err := w.parents(dir); err != nil {
		return err
	}
	n := w.fs.lookup(dir)
	if n == nil || !n.isDir() {
		return fmt.Errorf("%s: its directory %s is not in the final file system", p, dir)
	}
	return w.writeDir(n)
}

// writeDir writes a directory node once.
func (w *writer) writeDir(n *node) error {
	if n == nil {
		return errors.New("no such directory")
	}
	name := n.path + "/"
	if n == w.fs.root {
		name = "./"
	}
	if w.emitted[n.path] {
		return nil
	}
	var h *tar.Header
	if n.hdr != nil {
		h = header(n.hdr, name)
		h.Name = name
	} else {
		h = &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, Uname: "root", Gname: "root", ModTime: dirTime}
	}
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	w.emitted[n.path] = true
	return nil
}

// paxFields are PAX keys that header fields already carry.
var paxFields = map[string]bool{"path": true, "linkpath": true, "size": true, "uid": true, "gid": true, "uname": true, "gname": true, "mtime": true, "atime": true, "ctime": true}

// header copies h under the name p, keeping its metadata but letting the
// writer pick the tar format the fields need.
func header(h *tar.Header, p string) *tar.Header {
	out := *h
	out.Name = p
	out.Format = tar.FormatUnknown
	out.AccessTime, out.ChangeTime = time.Time{}, time.Time{}
	out.PAXRecords = nil
	for k, v := range h.PAXRecords {
		if !paxFields[k] {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[k] = v
		}
	}
	//lint:ignore SA1019 Xattrs repeats PAXRecords' SCHILY.xattr keys; clearing it leaves one copy.
	out.Xattrs = nil
	return &out
}
