package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	imgspec "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// lockPoll is how often a waiting copy tries the lock again.
const lockPoll = 20 * time.Millisecond

// commitLayout puts the layout staged in tmp into dir, holding an
// exclusive flock on dir's parent directory so that nixoci processes
// copying into the same layout take turns (containers/image reads
// index.json when a copy starts and writes it back at the end, so
// concurrent copies would keep only the last one's tag, and concurrent
// copies into a new layout would race to rename it into place).
//
// A dir that does not exist yet becomes tmp, renamed. Otherwise tmp's
// blobs are moved into dir's (a blob already there is the same content),
// its index entries are added to dir's index.json as containers/image adds
// them (an entry taking a name takes it from any other; an unnamed entry
// of the same digest is replaced), and index.json is replaced atomically.
func commitLayout(ctx context.Context, tmp, dir string, log Logger) error {
	unlock, err := lockDir(ctx, filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("locking the layout %s: %w", dir, err)
	}
	defer unlock()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("moving the copied layout into %s: %w", dir, err)
		}
		return nil
	}
	defer removeFunc(tmp, log)()
	if err := moveBlobs(filepath.Join(tmp, ocispec.ImageBlobsDir), filepath.Join(dir, ocispec.ImageBlobsDir)); err != nil {
		return fmt.Errorf("adding the copied blobs to the layout %s: %w", dir, err)
	}
	staged, err := readIndex(filepath.Join(tmp, ocispec.ImageIndexFile))
	if err != nil {
		return err
	}
	index, err := readIndex(filepath.Join(dir, ocispec.ImageIndexFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		index = &ocispec.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	case err != nil:
		return err
	}
	for _, desc := range staged.Manifests {
		addToIndex(index, desc)
	}
	if _, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile)); errors.Is(err, fs.ErrNotExist) {
		data, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err != nil {
			return fmt.Errorf("encoding %s: %w", ocispec.ImageLayoutFile, err)
		}
		if err := writeAtomic(filepath.Join(dir, ocispec.ImageLayoutFile), data); err != nil {
			return err
		}
	}
	data, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("encoding the index of %s: %w", dir, err)
	}
	return writeAtomic(filepath.Join(dir, ocispec.ImageIndexFile), data)
}

// lockDir takes an exclusive flock on directory dir, waiting for it until
// ctx ends, and returns the function that releases it. The kernel releases
// it too when the process dies.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock on %s: %w", dir, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// moveBlobs renames every blob file under from/ALGORITHM/ into
// to/ALGORITHM/, keeping a blob that is already there.
func moveBlobs(from, to string) error {
	algs, err := os.ReadDir(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		blobs, err := os.ReadDir(filepath.Join(from, alg.Name()))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(to, alg.Name()), 0o755); err != nil {
			return err
		}
		for _, b := range blobs {
			dst := filepath.Join(to, alg.Name(), b.Name())
			if _, err := os.Lstat(dst); err == nil {
				continue
			}
			if err := os.Rename(filepath.Join(from, alg.Name(), b.Name()), dst); err != nil {
				return err
			}
		}
	}
	return nil
}

func readIndex(path string) (*ocispec.Index, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the layout index %s: %w", path, err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("parsing the layout index %s: %w", path, err)
	}
	return &index, nil
}

// addToIndex adds desc to index the way containers/image's oci: writer
// does: a named entry takes its name away from any other entry, and
// replaces an unnamed entry of the same digest; otherwise it is appended.
func addToIndex(index *ocispec.Index, desc ocispec.Descriptor) {
	if name := desc.Annotations[ocispec.AnnotationRefName]; name != "" {
		for i := range index.Manifests {
			if index.Manifests[i].Annotations[ocispec.AnnotationRefName] == name {
				delete(index.Manifests[i].Annotations, ocispec.AnnotationRefName)
			}
		}
	}
	for i, m := range index.Manifests {
		if m.Digest == desc.Digest && m.Annotations[ocispec.AnnotationRefName] == "" {
			index.Manifests[i] = desc
			return
		}
	}
	index.Manifests = append(index.Manifests, desc)
}

// writeAtomic replaces path with data: a reader sees the old or the new
// file, never a part.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".nixoci-tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
