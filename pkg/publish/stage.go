package publish

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
)

// staged is where a copy really writes, and how to put the result in place.
type staged struct {
	// ref is the reference copy.Image writes to.
	ref types.ImageReference
	// commit moves a successful result into place; abort removes a failed
	// one. Both are no-ops when the copy writes to the destination directly.
	commit func() error
	abort  func()
}

// direct writes straight to ref.
func direct(ref types.ImageReference) staged {
	return staged{ref: ref, commit: func() error { return nil }, abort: func() {}}
}

// stage makes copies to dir: and to a new oci: layout all-or-nothing: they
// write into a hidden sibling directory that is renamed into place only
// after the copy succeeded, so a failure leaves nothing that looks like an
// image. A dir: destination that holds an earlier image is swapped whole;
// an existing oci: layout is written in place, since containers/image
// updates its index.json only at the very end.
func stage(ref types.ImageReference) (staged, error) {
	switch ref.Transport().Name() {
	case directory.Transport.Name():
		return stageDir(ref)
	case layout.Transport.Name():
		return stageOCI(ref)
	}
	return direct(ref), nil
}

func stageDir(ref types.ImageReference) (staged, error) {
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
	return staged{ref: tmpRef, commit: func() error { return replaceDir(tmp, target) }, abort: removeFunc(tmp)}, nil
}

func stageOCI(ref types.ImageReference) (staged, error) {
	// An oci: reference is DIR[:IMAGE]; DIR never holds a colon.
	dir, image, _ := strings.Cut(ref.StringWithinTransport(), ":")
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
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
	commit := func() error {
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("moving the copied layout into %s: %w", dir, err)
		}
		return nil
	}
	return staged{ref: tmpRef, commit: commit, abort: removeFunc(tmp)}, nil
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
func replaceDir(tmp, target string) error {
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
			logrus.Warnf("restoring the earlier image %s from %s: %v", target, old, rerr)
		}
		os.RemoveAll(tmp)
		return fmt.Errorf("moving the copied image into %s: %w", target, err)
	}
	if err := os.RemoveAll(old); err != nil {
		logrus.Warnf("removing the earlier image %s: %v", old, err)
	}
	return nil
}

func removeFunc(dir string) func() {
	return func() {
		if err := os.RemoveAll(dir); err != nil {
			logrus.Warnf("removing the incomplete copy %s: %v", dir, err)
		}
	}
}

func hasFile(dir, name string) bool {
	fi, err := os.Stat(filepath.Join(dir, name))
	return err == nil && fi.Mode().IsRegular()
}
