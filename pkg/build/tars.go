package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/layer"
)

// ErrTarExists is wrapped by the error for a tar directory that already
// holds a file under a layer's tar name whose size is not the layer's: a
// file nixoci did not write for that content.
var ErrTarExists = errors.New("tar directory holds another file under the layer's name")

// TarName is the name of the layer tar with diff_id diffID in a tar
// directory: the diff_id's hex digits and ".tar". A file of that name
// holds that tar, so a later build whose layer has the same diff_id keeps
// it instead of writing it again, and a build never writes over a tar of
// another layer.
func TarName(diffID digest.Digest) string {
	return diffID.Encoded() + ".tar"
}

// tarDir puts the tars of one build into a tar directory under their
// content names (TarName). Each layer's tar is first written into a hidden
// directory of this run (the name is known only once the tar is hashed)
// and then hard-linked to its name, which never replaces an existing file.
type tarDir struct {
	dir     string
	staging string
	// created are the files this run put into dir, removed again when the
	// build fails.
	created []string
}

func newTarDir(dir string) (*tarDir, error) {
	staging, err := os.MkdirTemp(dir, ".nixoci-layers-")
	if err != nil {
		return nil, fmt.Errorf("writing layer tars into %s: %w", dir, err)
	}
	return &tarDir{dir: dir, staging: staging}, nil
}

// stagingFile is where layer i's tar is written before it has a name.
func (t *tarDir) stagingFile(i int) string {
	return filepath.Join(t.staging, fmt.Sprintf("layer-%d.tar", i))
}

// place gives every layer's staged tar its content name and returns the
// layers served from there.
func (t *tarDir) place(layers []layer.Layer) ([]layer.Layer, error) {
	out := make([]layer.Layer, len(layers))
	for i, l := range layers {
		d := l.(layer.Describer).Descriptor()
		final := filepath.Join(t.dir, TarName(d.DiffID))
		if err := t.put(d.Tar, final, d.UncompressedSize); err != nil {
			return nil, fmt.Errorf("layer %d (diff_id %s): %w", i, d.DiffID, err)
		}
		d.Tar = final
		nl, err := layer.FromDescriptor(d)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		out[i] = nl
	}
	return out, nil
}

// put makes staged available as final without replacing a file: an
// existing final of the tar's size is the same tar (its name is its
// digest) and is kept; any other existing file is an error.
func (t *tarDir) put(staged, final string, size int64) error {
	err := os.Link(staged, final)
	if err == nil {
		t.created = append(t.created, final)
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: rename, after making sure
		// nothing is there (another writer in between is not covered).
		if _, serr := os.Lstat(final); errors.Is(serr, fs.ErrNotExist) {
			if err := os.Rename(staged, final); err != nil {
				return fmt.Errorf("writing layer tar %s: %w", final, err)
			}
			t.created = append(t.created, final)
			return nil
		}
	}
	fi, err := os.Lstat(final)
	if err != nil {
		return fmt.Errorf("writing layer tar %s: %w", final, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != size {
		return fmt.Errorf("%s is there already and is not this layer's tar (a %s of %d bytes, the tar has %d): %w: nixoci names the tars it writes by their diff_id, so something else wrote it or it changed; remove it or write the tars into another directory",
			final, fileKind(fi), fi.Size(), size, ErrTarExists)
	}
	return nil
}

// close removes the staging directory and, when the build failed, the
// tars this run created.
func (t *tarDir) close(failed bool) {
	os.RemoveAll(t.staging)
	if failed {
		for _, f := range t.created {
			os.Remove(f)
		}
	}
}

func fileKind(fi fs.FileInfo) string {
	switch {
	case fi.Mode().IsRegular():
		return "file"
	case fi.IsDir():
		return "directory"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
