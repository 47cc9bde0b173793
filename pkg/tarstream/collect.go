package tarstream

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
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
}

func (e *entry) implied() bool { return e.src == "" }

// tarName is e's name in the tar: directories end with "/".
func (e *entry) tarName() string {
	if e.typ == tar.TypeDir {
		return e.name + "/"
	}
	return e.name
}

// plan walks every path and returns the entries in stream order.
func plan(ctx context.Context, rs []*rules) ([]entry, error) {
	var all []entry
	for _, r := range rs {
		var err error
		if all, err = walk(ctx, r, all); err != nil {
			return nil, err
		}
	}
	return order(all, rs)
}

func walk(ctx context.Context, r *rules, out []entry) ([]entry, error) {
	fi, err := os.Lstat(r.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store path %s is missing or was garbage-collected: rebuild it, or realise it with `nix-store --realise %s`: %w", r.root, r.root, ErrMissingPath)
		}
		return nil, fmt.Errorf("reading store path %s: %w", r.root, err)
	}
	return add(ctx, r, r.root, fi, out)
}

func add(ctx context.Context, r *rules, src string, fi fs.FileInfo, out []entry) ([]entry, error) {
	name, err := r.imagePath(src)
	if err != nil {
		return nil, err
	}
	if r.ignore != nil && r.ignore.MatchString("/"+name) {
		return out, nil
	}
	e := entry{name: name, src: src, path: r.index, uname: "root", gname: "root"}
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
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("reading directory %s in store path %s: %w", src, r.root, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading directory %s in store path %s: %w", src, r.root, err)
	}
	sort.Strings(names)
	for _, n := range names {
		child := filepath.Join(src, n)
		cfi, err := os.Lstat(child)
		if err != nil {
			return nil, fmt.Errorf("reading %s in store path %s: %w", child, r.root, err)
		}
		if out, err = add(ctx, r, child, cfi, out); err != nil {
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

// order sorts entries bytewise by image path (parents sort before their
// children), keeps one of several identical directories, adds the implied
// parent directories and reports conflicting entries.
func order(all []entry, rs []*rules) ([]entry, error) {
	slices.SortFunc(all, compareEntries)
	uniq := all[:0]
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].name == all[i].name {
			j++
		}
		for k := i + 1; k < j; k++ {
			if all[i].typ != tar.TypeDir || all[k].typ != tar.TypeDir {
				return nil, collision(&all[i], &all[k], rs)
			}
		}
		uniq = append(uniq, all[i])
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
					return nil, notDir(p, e, rs)
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
		return uniq, nil
	}
	for dir, owner := range implied {
		uniq = append(uniq, entry{name: dir, path: owner, typ: tar.TypeDir, mode: 0o555, uname: "root", gname: "root"})
	}
	slices.SortFunc(uniq, compareEntries)
	return uniq, nil
}

func collision(a, b *entry, rs []*rules) error {
	ra, rb := rs[a.path].root, rs[b.path].root
	if a.path == b.path {
		return fmt.Errorf("store path %s: %s and %s both become /%s in the image: %w: change the rewrite or ignore one of them", ra, a.src, b.src, a.name, ErrCollision)
	}
	return fmt.Errorf("store paths %s and %s both provide /%s (from %s and %s): %w: keep only one of them in the layer (or ignore the file in one)", ra, rb, a.name, a.src, b.src, ErrCollision)
}

func notDir(parent, child *entry, rs []*rules) error {
	return fmt.Errorf("store path %s puts %s at /%s, which is not a directory, but store path %s has /%s under it: %w: keep only one of them in the layer",
		rs[parent.path].root, parent.src, parent.name, rs[child.path].root, child.name, ErrCollision)
}
