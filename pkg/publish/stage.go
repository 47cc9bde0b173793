package publish

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
)

// ErrDestinationExists is wrapped by the error for a docker-archive:
// destination file that already holds an archive.
var ErrDestinationExists = errors.New("destination already exists")

// staged is where one copy attempt really writes, and how to put the
// result in place.
type staged struct {
	// ref is the reference copy.Image writes to.
	ref types.ImageReference
	// sharedBlobDir, when set, is where an oci: destination keeps its
	// blobs (the blobs directory of the existing layout it adds to).
	sharedBlobDir string
	// commit moves a successful result into place; abort removes a failed
	// one. Both are no-ops when the copy writes to the destination directly.
	commit func(ctx context.Context) error
	abort  func()
}

// direct writes straight to ref.
func direct(ref types.ImageReference) staged {
	return staged{ref: ref, commit: func(context.Context) error { return nil }, abort: func() {}}
}

// stage makes copies to directories and files all-or-nothing, and copies
// into an oci: layout safe from other nixoci processes:
//
//   - dir: writes into a hidden sibling directory that replaces the
//     destination only after the copy succeeded;
//   - oci: writes a new layout into a hidden sibling directory that is
//     renamed into place, and adds to an existing one by writing its
//     blobs (content-addressed) into the layout and its index entry into
//     a hidden sibling, merged into the layout's index.json under a lock
//     (see commitLayout);
//   - docker-archive: and oci-archive: write a hidden sibling file renamed
//     into place after the copy succeeded.
//
// So a failure or a signal leaves nothing that looks like an image, and
// a rerun works.
func stage(ref types.ImageReference, log Logger) (staged, error) {
	switch ref.Transport().Name() {
	case directory.Transport.Name():
		return stageDir(ref, log)
	case layout.Transport.Name():
		return stageOCI(ref, log)
	case "docker-archive", "oci-archive":
		return stageFile(ref, log)
	}
	return direct(ref), nil
}

func stageDir(ref types.ImageReference, log Logger) (staged, error) {
	target := ref.StringWithinTransport()
	switch entries, err := os.ReadDir(target); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return staged{}, fmt.Errorf("reading destination directory %s: %w", target, err)
	case len(entries) > 0 && !hasFile(target, "version"):
		// Not an image directory: let containers/image refuse it.
		return direct(ref), nil
	}
	tmp, err := tempSibling(target)
	if err != nil {
		return staged{}, err
	}
	tmpRef, err := directory.NewReference(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return staged{}, fmt.Errorf("staging %s: %w", target, err)
	}
	commit := func(context.Context) error { return replaceDir(tmp, target, log) }
	return staged{ref: tmpRef, commit: commit, abort: removeFunc(tmp, log)}, nil
}

func stageOCI(ref types.ImageReference, log Logger) (staged, error) {
	// An oci: reference is DIR[:IMAGE]; DIR never holds a colon.
	dir, image, _ := strings.Cut(ref.StringWithinTransport(), ":")
	fi, err := os.Lstat(dir)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return staged{}, fmt.Errorf("reading destination layout %s: %w", dir, err)
	case exists && !fi.IsDir():
		// Let containers/image refuse it.
		return direct(ref), nil
	}
	tmp, err := tempSibling(dir)
	if err != nil {
		return staged{}, err
	}
	tmpRef, err := layout.NewReference(tmp, image)
	if err != nil {
		os.RemoveAll(tmp)
		return staged{}, fmt.Errorf("staging %s: %w", dir, err)
	}
	st := staged{ref: tmpRef, abort: removeFunc(tmp, log)}
	if exists {
		st.sharedBlobDir = filepath.Join(dir, "blobs")
	}
	st.commit = func(ctx context.Context) error { return commitLayout(ctx, tmp, dir, log) }
	return st, nil
}

// stageFile stages a docker-archive: or oci-archive: destination file. A
// destination that is not a regular file (a device such as /dev/stdout, a
// pipe, a symlink) is written directly. docker-archive: cannot add to an
// archive, so a non-empty one is refused here, as containers/image would.
func stageFile(ref types.ImageReference, log Logger) (staged, error) {
	// Both are PATH[:MORE]; PATH never holds a colon.
	within := ref.StringWithinTransport()
	target, rest, hasRest := strings.Cut(within, ":")
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return staged{}, fmt.Errorf("reading destination file %s: %w", target, err)
	case !fi.Mode().IsRegular():
		return direct(ref), nil
	case ref.Transport().Name() == "docker-archive" && fi.Size() > 0:
		return staged{}, fmt.Errorf("destination %s: %s already holds an archive, and docker-archive cannot add to one: %w: remove the file or name another", refString(ref), target, ErrDestinationExists)
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".nixoci-tmp-*")
	if err != nil {
		return staged{}, fmt.Errorf("staging %s: %w", target, err)
	}
	tmp := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return staged{}, fmt.Errorf("staging %s: %w", target, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return staged{}, fmt.Errorf("staging %s: %w", target, err)
	}
	tmpWithin := tmp
	if hasRest {
		tmpWithin += ":" + rest
	}
	tmpRef, err := ref.Transport().ParseReference(tmpWithin)
	if err != nil {
		os.Remove(tmp)
		return staged{}, fmt.Errorf("staging %s: %w", target, err)
	}
	commit := func(context.Context) error {
		if err := os.Rename(tmp, target); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("moving the copied archive into %s: %w", target, err)
		}
		return nil
	}
	abort := func() {
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warnf("removing the incomplete copy %s: %v", tmp, err)
		}
	}
	return staged{ref: tmpRef, commit: commit, abort: abort}, nil
}

// tempSibling creates an empty hidden directory next to target (creating
// target's parent if needed, as the destinations would).
func tempSibling(target string) (string, error) {
	parent := filepath.Dir(filepath.Clean(target))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating the parent of %s: %w", target, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(target))+".nixoci-tmp-")
	if err != nil {
		return "", fmt.Errorf("staging %s: %w", target, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("staging %s: %w", target, err)
	}
	return tmp, nil
}

// replaceDir puts tmp at target, moving an earlier target aside first and
// back if the move fails.
func replaceDir(tmp, target string, log Logger) error {
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, target); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("moving the copied image into %s: %w", target, err)
		}
		return nil
	}
	old, err := tempSibling(target)
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// Free the unique name for the rename (not every file system renames a
	// directory onto an empty one).
	if err := os.Remove(old); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("moving the earlier image in %s aside: %w", target, err)
	}
	if err := os.Rename(target, old); err != nil {
		os.RemoveAll(tmp)
		os.Remove(old)
		return fmt.Errorf("moving the earlier image in %s aside: %w", target, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		if rerr := os.Rename(old, target); rerr != nil {
			log.Warnf("restoring the earlier image %s from %s: %v", target, old, rerr)
		}
		os.RemoveAll(tmp)
		return fmt.Errorf("moving the copied image into %s: %w", target, err)
	}
	if err := os.RemoveAll(old); err != nil {
		log.Warnf("removing the earlier image %s: %v", old, err)
	}
	return nil
}

func removeFunc(dir string, log Logger) func() {
	return func() {
		if err := os.RemoveAll(dir); err != nil {
			log.Warnf("removing the incomplete copy %s: %v", dir, err)
		}
	}
}

func hasFile(dir, name string) bool {
	fi, err := os.Stat(filepath.Join(dir, name))
	return err == nil && fi.Mode().IsRegular()
}
