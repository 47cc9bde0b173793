package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// DefaultCompression is used when Spec.Compression is empty.
const DefaultCompression = descriptor.Gzip

// Spec says what goes into one layer.
type Spec struct {
	// Paths are the store paths, with their rewrite, perms and ignore rules.
	Paths []descriptor.Path
	// Compression is "gzip", "zstd" or "none"; "" means DefaultCompression.
	Compression string
	// History is copied into the layer.
	History *descriptor.History
	// TarFile, when set, also receives the uncompressed tar (written to a
	// temporary file in the same directory, then renamed), and the layer is
	// served from that file: a non-reproducible layer. It keeps the list of
	// store paths it holds at their store location (StorePaths).
	TarFile string
	// Observe, when set, is called for every entry of the tar as it is
	// streamed (see tarstream.WithObserver): a spec with an observer is
	// always streamed, never taken from a cache. To stop the stream, cancel
	// the context given to Describe.
	Observe func(tarstream.Entry)
	// Cache, when set, memoises compression: the tar is still streamed and
	// hashed, but compressed only when the cache does not know it. The
	// layer is the same as without it.
	Cache *Cache
	// SizeHint is the expected size of the tar, such as the sum of the
	// paths' NAR sizes, or 0 when unknown. DescribeAll starts the most
	// costly layers first; it changes nothing else.
	SizeHint int64
}

// sums computes a layer's digests from one pass over its tar: the tar is
// written to Writer; Finish closes the compressor and fills the layer.
type sums struct {
	c     compress.Compressor
	diff  *Digester
	blob  *Digester // nil for "none": the blob is the tar
	cw    io.WriteCloser
	w     io.Writer
	extra io.Writer
}

// compressorFor is the compressor of algorithm, "" meaning DefaultCompression.
func compressorFor(algorithm string) (compress.Compressor, error) {
	if algorithm == "" {
		algorithm = DefaultCompression
	}
	return compress.New(algorithm)
}

// newSums hashes the tar and, when compressing, its blob compressed by c;
// otherwise finish leaves the blob's digest and size for the caller.
func newSums(c compress.Compressor, extra io.Writer, compressing bool) (*sums, error) {
	s := &sums{c: c, diff: NewDigester(), extra: extra}
	ws := []io.Writer{s.diff}
	if extra != nil {
		ws = append(ws, extra)
	}
	var err error
	if compressing && c.Identity().Algorithm != descriptor.None {
		s.blob = NewDigester()
		if s.cw, err = c.NewWriter(s.blob); err != nil {
			return nil, err
		}
		ws = append(ws, s.cw)
	}
	s.w = io.MultiWriter(ws...)
	if len(ws) == 1 {
		s.w = ws[0]
	}
	return s, nil
}

func (s *sums) finish(l *descriptor.Layer) error {
	if s.cw != nil {
		if err := s.cw.Close(); err != nil {
			return fmt.Errorf("compressing layer: %w", err)
		}
	}
	l.MediaType = s.c.MediaType()
	l.Compressor = s.c.Identity()
	l.DiffID, l.UncompressedSize = s.diff.Digest(), s.diff.Size()
	switch {
	case s.blob != nil:
		l.Digest, l.Size = s.blob.Digest(), s.blob.Size()
	case l.Compressor.Algorithm == descriptor.None:
		l.Digest, l.Size = l.DiffID, l.UncompressedSize
	}
	return nil
}

// Describe streams the layer's tar once and returns the layer it describes:
// diff_id, compressed digest, sizes, compressor identity and, per path, the
// share digest and fingerprints.
func Describe(ctx context.Context, spec Spec) (Layer, error) {
	d, err := describe(ctx, spec)
	if err != nil {
		return nil, err
	}
	return FromDescriptor(d)
}

func describe(ctx context.Context, spec Spec) (descriptor.Layer, error) {
	var l descriptor.Layer
	if len(spec.Paths) == 0 {
		return l, errors.New("describing layer: no store paths given")
	}
	var tmp *os.File
	var extra io.Writer
	if spec.TarFile != "" {
		var err error
		tmp, err = os.CreateTemp(filepath.Dir(spec.TarFile), "."+filepath.Base(spec.TarFile)+".tmp*")
		if err != nil {
			return l, fmt.Errorf("writing layer tar %s: %w", spec.TarFile, err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		extra = tmp
	}
	c, err := compressorFor(spec.Compression)
	if err != nil {
		return l, fmt.Errorf("describing layer: %w", err)
	}
	plan := spec.Cache.plan(spec, c)
	s, err := newSums(c, extra, plan.compressNow)
	if err != nil {
		return l, fmt.Errorf("describing layer: %w", err)
	}
	var wopts []tarstream.Option
	if spec.Observe != nil {
		wopts = append(wopts, tarstream.WithObserver(spec.Observe))
	}
	shares, err := tarstream.Write(ctx, s.w, spec.Paths, wopts...)
	if err != nil {
		return l, fmt.Errorf("describing layer: %w", err)
	}
	if err := s.finish(&l); err != nil {
		return l, err
	}
	if err := plan.complete(ctx, &l, s.blob != nil, restreamer(spec, tmp)); err != nil {
		return l, fmt.Errorf("describing layer: %w", err)
	}
	l.History = spec.History
	if tmp != nil {
		if err := closeInto(tmp, spec.TarFile); err != nil {
			return l, err
		}
		tmp = nil
		l.Tar = spec.TarFile
		for _, p := range spec.Paths {
			if p.Rewrite == nil {
				l.StorePaths = append(l.StorePaths, p.Path)
			}
		}
		l.StorePaths = sortedCopy(l.StorePaths)
		return l, nil
	}
	l.Paths = make([]descriptor.Path, len(spec.Paths))
	for i, p := range spec.Paths {
		p.Digest, p.Fingerprints = shares[i].Digest, shares[i].Fingerprints
		l.Paths[i] = p
	}
	return l, nil
}

func closeInto(tmp *os.File, dst string) error {
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return fmt.Errorf("writing layer tar %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing layer tar %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("writing layer tar %s: %w", dst, err)
	}
	return nil
}

// DescribeTar describes a stored uncompressed tar file as a layer served
// from that file, compressed with compression.
func DescribeTar(ctx context.Context, tarPath, compression string, history *descriptor.History) (Layer, error) {
	var l descriptor.Layer
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, fmt.Errorf("reading layer tar %s: %w", tarPath, err)
	}
	defer f.Close()
	c, err := compressorFor(compression)
	if err != nil {
		return nil, fmt.Errorf("describing layer tar %s: %w", tarPath, err)
	}
	s, err := newSums(c, nil, true)
	if err != nil {
		return nil, fmt.Errorf("describing layer tar %s: %w", tarPath, err)
	}
	if _, err := copyContext(ctx, s.w, f); err != nil {
		return nil, fmt.Errorf("reading layer tar %s: %w", tarPath, err)
	}
	if err := s.finish(&l); err != nil {
		return nil, err
	}
	l.Tar, l.History = tarPath, history
	return FromDescriptor(l)
}

// DescribeAll describes every spec on runtime.NumCPU() workers, the most
// costly first (see Spec.SizeHint and Spec.Cache). Results are in input
// order; the first error cancels the rest and is returned, and the tar
// files of the specs that did finish are removed.
func DescribeAll(ctx context.Context, specs []Spec) ([]Layer, error) {
	out := make([]Layer, len(specs))
	order := schedule(specs)
	err := parallel.Do(ctx, len(specs), func(ctx context.Context, j int) error {
		i := order[j]
		l, err := Describe(ctx, specs[i])
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		out[i] = l
		return nil
	})
	if err != nil {
		// Leave nothing half-done: tars of the layers that did finish
		// would describe a build that failed.
		for i, l := range out {
			if l != nil && specs[i].TarFile != "" {
				os.Remove(specs[i].TarFile)
			}
		}
		return nil, err
	}
	return out, nil
}
