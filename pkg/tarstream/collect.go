package tarstream

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// entry is one tar entry before it is written.
type entry struct {
	name         string // image path: relative, no trailing slash
	src          string // source file; "" for an implied parent
	path         int    // input path index
	typ          byte
	mode         int64
	size         int64
	uid, gid     int
	uname, gname string
	link         string
	mtime        int64 // seconds since the epoch
}

func (e *entry) implied() bool { return e.src == "" }

// tarName is e's name in the tar: directories end with "/".
func (e *entry) tarName() string {
	if e.typ == tar.TypeDir {
		return e.name + "/"
	}
	return e.name
}

// defaultMtime is the modification time of every entry of a path whose
// descriptor.Path.Mtime is unset: 1970-01-01T00:00:01Z.
const defaultMtime = 1

// maxDirlinkRounds bounds how often symlinks to directories are merged as
// directories within one layer: a symlink that leads back into its own
// tree would otherwise be followed forever.
const maxDirlinkRounds = 64

// setting is what the stream takes from a descriptor.Path besides its
// rules: the time of its entries and how its symlinks to directories merge.
type setting struct {
	mtime        int64
	keepDirlinks bool
}

func settingsOf(paths []descriptor.Path) ([]setting, error) {
	out := make([]setting, len(paths))
	for i, p := range paths {
		out[i] = setting{mtime: defaultMtime, keepDirlinks: p.KeepDirlinks}
		if p.Mtime != nil {
			if *p.Mtime < 0 || *p.Mtime > maxSize {
				return nil, fmt.Errorf("store path %s: mtime %d: %w: give seconds since 1970-01-01T00:00:00Z between 0 and %d", p.Path, *p.Mtime, ErrBadRule, int64(maxSize))
			}
			out[i].mtime = *p.Mtime
		}
	}
	return out, nil
}

// replaced is one entry that a later input path's entry replaced.
type replaced struct {
	old, new entry
}

// plan walks every path and returns the entries in stream order.
func plan(ctx context.Context, rs []*rules, paths []descriptor.Path) ([]entry, error) {
	entries, _, err := collect(ctx, rs, paths)
	return entries, err
}

// collect walks every path, merges the entries that several paths provide
// at one image path, and returns the entries in stream order with the
// replacements it made.
func collect(ctx context.Context, rs []*rules, paths []descriptor.Path) ([]entry, []replaced, error) {
	set, err := settingsOf(paths)
	if err != nil {
		return nil, nil, err
	}
	var all []entry
	for _, r := range rs {
		if all, err = walk(ctx, r, set[r.index], all); err != nil {
			return nil, nil, err
		}
	}
	if all, err = mergeDirlinks(ctx, all, rs, set); err != nil {
		return nil, nil, err
	}
	return order(all, rs, set)
}

func walk(ctx context.Context, r *rules, s setting, out []entry) ([]entry, error) {
	fi, err := os.Lstat(r.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store path %s is missing or was garbage-collected: rebuild it, or realise it with `nix-store --realise %s`: %w", r.root, r.root, ErrMissingPath)
		}
		return nil, fmt.Errorf("reading store path %s: %w", r.root, err)
	}
	w := walker{ctx: ctx, r: r, s: s, nameOf: r.imagePath}
	return w.add(r.root, fi, out)
}

// walker adds the entries of one input path. nameOf gives a source file's
// image path: the path's rewrite, or, under a symlink merged as a
// directory, the symlink's image path and the file's place below its target.
type walker struct {
	ctx    context.Context
	r      *rules
	s      setting
	nameOf func(src string) (string, error)
}

func (w *walker) add(src string, fi fs.FileInfo, out []entry) ([]entry, error) {
	r := w.r
	name, err := w.nameOf(src)
	if err != nil {
		return nil, err
	}
	if r.ignore != nil && r.ignore.MatchString("/"+name) {
		return out, nil
	}
	e := entry{name: name, src: src, path: r.index, uname: "root", gname: "root", mtime: w.s.mtime}
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		e.typ, e.mode, e.size = tar.TypeReg, 0o444, fi.Size()
		if mode&0o111 != 0 {
			e.mode = 0o555
		}
	case mode.IsDir():
		e.typ, e.mode = tar.TypeDir, 0o555
	case mode&fs.ModeSymlink != 0:
		e.typ, e.mode = tar.TypeSymlink, 0o777
		if e.link, err = os.Readlink(src); err != nil {
			return nil, fmt.Errorf("reading symlink %s in store path %s: %w", src, r.root, err)
		}
	default:
		return nil, fmt.Errorf("%s in store path %s is a %s: %w: only regular files, directories and symlinks can go in a layer; remove it from the path or ignore it", src, r.root, kind(mode), ErrUnsupportedType)
	}
	r.applyPerms(&e)
	if name == "" {
		if e.typ != tar.TypeDir {
			return nil, fmt.Errorf("store path %s: %s would replace the image root, which must be a directory: %w: change its rewrite", r.root, src, ErrBadRule)
		}
	} else {
		out = append(out, e)
	}
	if e.typ != tar.TypeDir {
		return out, nil
	}
	return w.children(src, out)
}

// children adds the entries below the directory dir.
func (w *walker) children(dir string, out []entry) ([]entry, error) {
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("reading directory %s in store path %s: %w", dir, w.r.root, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading directory %s in store path %s: %w", dir, w.r.root, err)
	}
	sort.Strings(names)
	for _, n := range names {
		child := filepath.Join(dir, n)
		cfi, err := os.Lstat(child)
		if err != nil {
			return nil, fmt.Errorf("reading %s in store path %s: %w", child, w.r.root, err)
		}
		if out, err = w.add(child, cfi, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file (" + m.Type().String() + ")"
}

func compareEntries(a, b entry) int {
	if c := cmp.Compare(a.name, b.name); c != 0 {
		return c
	}
	// Real entries before implied ones, then input order.
	if c := cmp.Compare(boolInt(a.implied()), boolInt(b.implied())); c != 0 {
		return c
	}
	return cmp.Compare(a.path, b.path)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dirTarget returns the directory a symlink entry points to on this
// machine, or "" when it does not point to a directory.
func dirTarget(e *entry) string {
	if e.typ != tar.TypeSymlink {
		return ""
	}
	target := e.link
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(e.src), target)
	}
	fi, err := os.Stat(target)
	if err != nil || !fi.IsDir() {
		return ""
	}
	return target
}

// mergeDirlinks replaces a symlink to a directory by that directory's
// content, under the symlink's name, where another input path has a
// directory (or another such symlink) at the same image path or entries
// below it, so that the two merge as directories, as `rsync -k` copies
// them. Paths with keepDirlinks keep their symlinks. Symlinks nothing
// collides with stay symlinks, so layers without such collisions are
// unchanged.
func mergeDirlinks(ctx context.Context, all []entry, rs []*rules, set []setting) ([]entry, error) {
	for round := 0; ; round++ {
		slices.SortFunc(all, compareEntries)
		expand := map[int]string{} // index in all -> target directory
		consider := func(i int) {
			e := &all[i]
			if _, ok := expand[i]; ok || e.typ != tar.TypeSymlink || set[e.path].keepDirlinks {
				return
			}
			if t := dirTarget(e); t != "" {
				expand[i] = t
			}
		}
		for i := 0; i < len(all); {
			j := i + 1
			for j < len(all) && all[j].name == all[i].name {
				j++
			}
			if j-i > 1 && multiplePaths(all[i:j]) {
				// A symlink merges when the name also holds a directory or
				// a symlink to one from another path.
				dirs := 0
				for k := i; k < j; k++ {
					if all[k].typ == tar.TypeDir || dirTarget(&all[k]) != "" {
						dirs++
					}
				}
				if dirs > 1 {
					for k := i; k < j; k++ {
						consider(k)
					}
				}
			}
			i = j
		}
		// Entries of one path below another path's symlink.
		for i := range all {
			e := &all[i]
			for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
				k, ok := slices.BinarySearchFunc(all, dir, func(x entry, n string) int { return cmp.Compare(x.name, n) })
				if !ok {
					continue
				}
				for ; k < len(all) && all[k].name == dir; k++ {
					if all[k].typ == tar.TypeSymlink && all[k].path != e.path {
						consider(k)
					}
				}
				break
			}
		}
		if len(expand) == 0 {
			return all, nil
		}
		if round == maxDirlinkRounds {
			var names []string
			for i := range expand {
				names = append(names, "/"+all[i].name)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("symlinks to directories still collide after merging %d levels of them (a symlink that leads back into its own tree?): %v: %w: set keepContentsDirlinks, or keep only one of the paths", maxDirlinkRounds, names, ErrCollision)
		}
		var err error
		keep := all[:0:0]
		for i := range all {
			target, ok := expand[i]
			if !ok {
				keep = append(keep, all[i])
				continue
			}
			if keep, err = expandDirlink(ctx, all[i], target, rs[all[i].path], set[all[i].path], keep); err != nil {
				return nil, err
			}
		}
		all = keep
	}
}

// multiplePaths reports whether the entries come from more than one input path.
func multiplePaths(es []entry) bool {
	for _, e := range es[1:] {
		if e.path != es[0].path {
			return true
		}
	}
	return false
}

// expandDirlink appends the directory target, named as the symlink link,
// and everything below it, to out.
func expandDirlink(ctx context.Context, link entry, target string, r *rules, s setting, out []entry) ([]entry, error) {
	w := walker{ctx: ctx, r: r, s: s, nameOf: func(src string) (string, error) {
		rel, err := filepath.Rel(target, src)
		if err != nil {
			return "", fmt.Errorf("store path %s: following symlink %s: %w", r.root, link.src, err)
		}
		if rel == "." {
			return link.name, nil
		}
		name, err := normalise(filepath.ToSlash(rel))
		if err != nil {
			return "", fmt.Errorf("store path %s: following symlink %s: %s: %w", r.root, link.src, src, err)
		}
		return link.name + "/" + name, nil
	}}
	fi, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("store path %s: following symlink %s to %s: %w", r.root, link.src, target, err)
	}
	return w.add(target, fi, out)
}

// order sorts entries bytewise by image path (parents sort before their
// children), merges the entries several paths provide at one image path,
// adds the implied parent directories and reports conflicting entries.
//
// Directories merge: the first in input order is kept. A file or symlink
// of a later input path replaces one of an earlier path (each such
// replacement is returned). A directory against a file or symlink, and
// two entries of one path at the same image path, are errors.
func order(all []entry, rs []*rules, set []setting) ([]entry, []replaced, error) {
	slices.SortFunc(all, compareEntries)
	var repl []replaced
	uniq := all[:0]
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].name == all[i].name {
			j++
		}
		keep := i
		if j-i > 1 {
			group := all[i:j]
			var dir, other *entry
			for k := range group {
				if group[k].typ == tar.TypeDir {
					dir = cmp.Or(dir, &group[k])
				} else {
					other = cmp.Or(other, &group[k])
				}
			}
			switch {
			case dir != nil && other != nil:
				a, b := dir, other
				if b.path < a.path {
					a, b = b, a
				}
				return nil, nil, collision(a, b, rs)
			case other == nil:
				// Directories only: the first is kept.
			default:
				for k := 1; k < len(group); k++ {
					a, b := &group[k-1], &group[k]
					if a.path == b.path {
						return nil, nil, collision(a, b, rs)
					}
					repl = append(repl, replaced{old: *a, new: *b})
				}
				keep = j - 1
			}
		}
		uniq = append(uniq, all[keep])
		i = j
	}
	find := func(name string) *entry {
		k, ok := slices.BinarySearchFunc(uniq, name, func(e entry, n string) int { return cmp.Compare(e.name, n) })
		if !ok {
			return nil
		}
		return &uniq[k]
	}
	implied := map[string]int{}
	for i := range uniq {
		e := &uniq[i]
		for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
			if p := find(dir); p != nil {
				if p.typ != tar.TypeDir {
					return nil, nil, notDir(p, e, rs)
				}
				break
			}
			if owner, ok := implied[dir]; ok && owner <= e.path {
				break
			}
			implied[dir] = e.path
		}
	}
	if len(implied) == 0 {
		return uniq, repl, nil
	}
	for dir, owner := range implied {
		uniq = append(uniq, entry{name: dir, path: owner, typ: tar.TypeDir, mode: 0o555, uname: "root", gname: "root", mtime: set[owner].mtime})
	}
	slices.SortFunc(uniq, compareEntries)
	return uniq, repl, nil
}

func collision(a, b *entry, rs []*rules) error {
	ra, rb := rs[a.path].root, rs[b.path].root
	if a.path == b.path {
		return fmt.Errorf("store path %s: %s and %s both become /%s in the image: %w: change the rewrite or ignore one of them", ra, a.src, b.src, a.name, ErrCollision)
	}
	what := func(e *entry) string {
		if e.typ == tar.TypeDir {
			return "a directory"
		}
		if e.typ == tar.TypeSymlink {
			return "a symlink"
		}
		return "a file"
	}
	return fmt.Errorf("store paths %s and %s both provide /%s, as %s (%s) and %s (%s): %w: a directory cannot merge with a file or symlink; keep only one of them in the layer (or ignore the entry in one)",
		ra, rb, a.name, what(a), a.src, what(b), b.src, ErrCollision)
}

func notDir(parent, child *entry, rs []*rules) error {
	return fmt.Errorf("store path %s puts %s at /%s, which is not a directory, but store path %s has /%s under it: %w: keep only one of them in the layer",
		rs[parent.path].root, parent.src, parent.name, rs[child.path].root, child.name, ErrCollision)
}

// Replacement is an entry of a later input path that replaced the entry
// an earlier path has at the same image path (see Write).
type Replacement struct {
	// Name is the image path, such as "/bin/sh".
	Name string
	// Old and New are the input paths (descriptor.Path.Path) whose entries
	// were replaced and kept; OldSource and NewSource are the files.
	Old, New             string
	OldSource, NewSource string
	// Identical is true when both entries have the same type, mode,
	// owner, symlink target and content, so nothing changed.
	Identical bool
}

// Replacements walks paths as Write does and returns, in stream order, the
// entries that a later path's entry replaced. Nothing is written; the
// content of two regular files is read only to tell whether they are
// identical.
func Replacements(ctx context.Context, paths []descriptor.Path) ([]Replacement, error) {
	rs, err := compileAll(paths)
	if err != nil {
		return nil, err
	}
	_, repl, err := collect(ctx, rs, paths)
	if err != nil {
		return nil, err
	}
	out := make([]Replacement, 0, len(repl))
	for _, x := range repl {
		same, err := identical(&x.old, &x.new)
		if err != nil {
			return nil, err
		}
		out = append(out, Replacement{
			Name: "/" + x.old.name, Old: rs[x.old.path].root, New: rs[x.new.path].root,
			OldSource: x.old.src, NewSource: x.new.src, Identical: same,
		})
	}
	return out, nil
}

// identical compares two non-directory entries, content included.
func identical(a, b *entry) (bool, error) {
	if a.typ != b.typ || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid ||
		a.uname != b.uname || a.gname != b.gname || a.link != b.link || a.size != b.size || a.mtime != b.mtime {
		return false, nil
	}
	if a.typ != tar.TypeReg || a.src == b.src {
		return true, nil
	}
	return sameContent(a.src, b.src)
}

func sameContent(x, y string) (bool, error) {
	fx, err := os.Open(x)
	if err != nil {
		return false, fmt.Errorf("comparing %s with %s: %w", x, y, err)
	}
	defer fx.Close()
	fy, err := os.Open(y)
	if err != nil {
		return false, fmt.Errorf("comparing %s with %s: %w", x, y, err)
	}
	defer fy.Close()
	bx, by := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		nx, ex := io.ReadFull(fx, bx)
		ny, ey := io.ReadFull(fy, by)
		if nx != ny || !bytes.Equal(bx[:nx], by[:ny]) {
			return false, nil
		}
		doneX := ex == io.EOF || ex == io.ErrUnexpectedEOF
		doneY := ey == io.EOF || ey == io.ErrUnexpectedEOF
		if ex != nil && !doneX {
			return false, fmt.Errorf("comparing %s with %s: %w", x, y, ex)
		}
		if ey != nil && !doneY {
			return false, fmt.Errorf("comparing %s with %s: %w", x, y, ey)
		}
		if doneX || doneY {
			return doneX == doneY, nil
		}
	}
}
