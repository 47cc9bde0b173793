package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// ErrShadowed is wrapped by the error for relocated (copy-to-root) content
// that would hide a store path's file in the image with other content.
var ErrShadowed = errors.New("copy-to-root content hides a store path's file")

// ShadowError says which copy-to-root file would hide which store path's
// file. Such content goes to the image path of a store path that a layer
// below, or a layer of the same build, holds at its store location: one of
// the two files would silently win over the other.
type ShadowError struct {
	// CopyToRoot is the store path relocated to /, and Source the file in
	// it (empty for a directory implied by the files under it).
	CopyToRoot, Source string
	// ImagePath is where both go in the image (no leading "/").
	ImagePath string
	// StorePath is the store path put at its store location, and File its
	// file at ImagePath.
	StorePath, File string
	// Below says whether StorePath is in a layer below the ones built.
	Below bool
}

func (e *ShadowError) Error() string {
	where := "another layer of this build"
	if e.Below {
		where = "a layer below"
	}
	what := "directory /" + e.ImagePath
	if e.Source != "" {
		what = strings.TrimPrefix(strings.TrimPrefix(e.Source, e.CopyToRoot), "/")
	}
	if e.File == e.StorePath && e.ImagePath != imagePath(e.StorePath) {
		return fmt.Sprintf("copy-to-root store path %s: its %s would hide /%s, which holds store path %s (in %s): %v: remove it from %s",
			e.CopyToRoot, what, e.ImagePath, e.StorePath, where, ErrShadowed, e.CopyToRoot)
	}
	return fmt.Sprintf("copy-to-root store path %s: its %s would hide %s of store path %s (in %s), which has other content: %v: remove it from %s, or make it the same as %s",
		e.CopyToRoot, what, e.File, e.StorePath, where, ErrShadowed, e.CopyToRoot, e.File)
}

func (e *ShadowError) Unwrap() error { return ErrShadowed }

// shadowCheck watches the relocated entries of the layers being described
// for image paths that belong to a store path held at its store location.
type shadowCheck struct {
	// owners maps the image path of each such store path (its path
	// without the leading "/") to it, and above the image paths of their
	// parent directories (such as nix/store) to one of them.
	owners, above map[string]owner
	cancel        context.CancelCauseFunc
}

type owner struct {
	path  string
	below bool
}

// newShadowCheck returns the check for plan on top of below, or nil when
// plan relocates nothing.
func newShadowCheck(plan [][]descriptor.Path, below []layer.Layer) *shadowCheck {
	relocates := false
	c := &shadowCheck{owners: map[string]owner{}, above: map[string]owner{}}
	add := func(o owner) {
		name := imagePath(o.path)
		c.owners[name] = o
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			c.above[dir] = o
		}
	}
	for p := range layer.StorePaths(below...) {
		add(owner{path: p, below: true})
	}
	for _, paths := range plan {
		for _, p := range paths {
			if p.Rewrite != nil {
				relocates = true
				continue
			}
			add(owner{path: p.Path})
		}
	}
	if !relocates {
		return nil
	}
	return c
}

// imagePath is where a store path kept at its store location is in the image.
func imagePath(storePath string) string {
	return strings.TrimLeft(path.Clean(storePath), "/")
}

// start returns the context to describe the layers with: the check cancels
// it, with the *ShadowError as its cause, at the first conflict.
func (c *shadowCheck) start(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, c.cancel = context.WithCancelCause(ctx)
	return ctx, c.cancel
}

// observer is the entry observer for a layer of paths.
func (c *shadowCheck) observer(paths []descriptor.Path) func(tarstream.Entry) {
	return func(e tarstream.Entry) {
		p := paths[e.Path]
		if p.Rewrite == nil {
			return
		}
		name := strings.TrimSuffix(e.Name, "/")
		if o, ok := c.above[name]; ok && e.Type != tar.TypeDir {
			// A file or symlink where the store directory is: it hides
			// every store path under it.
			c.cancel(&ShadowError{CopyToRoot: p.Path, Source: e.Source, ImagePath: name, StorePath: o.path, File: o.path})
			return
		}
		for dir := name; dir != "." && dir != "" && dir != "/"; dir = path.Dir(dir) {
			o, ok := c.owners[dir]
			if !ok {
				continue
			}
			if err := shadows(p.Path, e, name, o, o.path+strings.TrimPrefix(name, dir)); err != nil {
				c.cancel(err)
			}
			return
		}
	}
}

// result is the check's error, if it stopped the description (ctx is the
// context before start, dctx the one start returned).
func (c *shadowCheck) result(ctx, dctx context.Context) error {
	if ctx.Err() == nil && dctx.Err() != nil {
		return context.Cause(dctx)
	}
	return nil
}

// shadows returns a *ShadowError when the relocated entry e of store path
// from goes to the image path of file, o's own file, with other content.
// Directories over directories merge, and a file o does not have is only
// added: neither hides anything.
func shadows(from string, e tarstream.Entry, name string, o owner, file string) error {
	fi, err := os.Lstat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy-to-root store path %s puts %s at /%s: checking store path %s's file there: %w", from, e.Source, name, o.path, err)
	}
	same, err := sameContent(e, fi, file)
	if err != nil {
		return fmt.Errorf("copy-to-root store path %s puts %s at /%s: comparing it with %s: %w", from, e.Source, name, file, err)
	}
	if same {
		return nil
	}
	return &ShadowError{CopyToRoot: from, Source: e.Source, ImagePath: name, StorePath: o.path, File: file, Below: o.below}
}

// sameContent tells whether entry e and the file with info fi have the
// same type and content (bytes, or link target); modes are not compared.
func sameContent(e tarstream.Entry, fi fs.FileInfo, file string) (bool, error) {
	switch {
	case e.Type == tar.TypeDir:
		return fi.IsDir(), nil
	case e.Type == tar.TypeSymlink && fi.Mode()&fs.ModeSymlink != 0:
		a, err := os.Readlink(e.Source)
		if err != nil {
			return false, err
		}
		b, err := os.Readlink(file)
		return a == b, err
	case e.Type == tar.TypeReg && fi.Mode().IsRegular():
		if e.Size != fi.Size() {
			return false, nil
		}
		return sameBytes(e.Source, file)
	}
	return false, nil
}

// sameBytes compares two files of the same size.
func sameBytes(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if erra == io.EOF || erra == io.ErrUnexpectedEOF {
			return errb == io.EOF || errb == io.ErrUnexpectedEOF, nil
		}
		if erra != nil {
			return false, erra
		}
		if errb != nil {
			return false, errb
		}
	}
}
