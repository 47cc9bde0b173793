package layer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// errClosed is what the producer sees when the reader is closed early.
var errClosed = errors.New("layer reader closed")

// Open returns the bytes of l's blob, streamed lazily: for Paths, the tar
// stream compressed with l.Compressor.Algorithm; for Tar, the stored tar
// compressed the same way; for Blob, the stored file verbatim. With
// uncompressed, it is always the plain tar, whose digest is l.DiffID.
//
// Bytes are produced by a goroutine as they are read. The caller MUST
// Close the reader; closing early stops the goroutine and waits for it.
// Failures while streaming (a file that vanished, say) are returned by Read
// and name the store path.
func Open(ctx context.Context, l descriptor.Layer, uncompressed bool) (io.ReadCloser, error) {
	algorithm := l.Compressor.Algorithm
	if algorithm == "" {
		algorithm = descriptor.AlgorithmOf(l.MediaType)
	}
	switch {
	case len(l.Paths) > 0:
		if uncompressed {
			algorithm = descriptor.None
		}
		c, err := compress.New(algorithm)
		if err != nil {
			return nil, fmt.Errorf("opening layer %s: %w", l.Digest, err)
		}
		return produce(ctx, c, func(ctx context.Context, w io.Writer) error {
			_, err := tarstream.Write(ctx, w, l.Paths, tarstream.WithoutShares())
			return err
		}), nil
	case l.Tar != "":
		f, err := os.Open(l.Tar)
		if err != nil {
			return nil, fmt.Errorf("opening layer tar %s: %w: rebuild the image descriptor", l.Tar, err)
		}
		if uncompressed || algorithm == descriptor.None {
			return f, nil
		}
		c, err := compress.New(algorithm)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("opening layer %s: %w", l.Digest, err)
		}
		return produce(ctx, c, func(ctx context.Context, w io.Writer) error {
			defer f.Close()
			if _, err := copyContext(ctx, w, f); err != nil {
				return fmt.Errorf("reading layer tar %s: %w", l.Tar, err)
			}
			return nil
		}), nil
	case l.Blob != "":
		f, err := os.Open(l.Blob)
		if err != nil {
			return nil, fmt.Errorf("opening layer blob %s: %w", l.Blob, err)
		}
		if !uncompressed {
			return f, nil
		}
		zr, err := compress.NewReader(algorithm, f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("opening layer blob %s: %w", l.Blob, err)
		}
		return &stackCloser{Reader: zr, closers: []io.Closer{zr, f}}, nil
	}
	return nil, fmt.Errorf("opening layer %s: it has no paths, tar or blob", l.Digest)
}

type stackCloser struct {
	io.Reader
	closers []io.Closer
}

func (s *stackCloser) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// produce runs write in a goroutine, compressing its output with c into a
// pipe whose reading end it returns.
func produce(ctx context.Context, c compress.Compressor, write func(context.Context, io.Writer) error) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Compressors hand on their output in pieces of a few hundred
		// bytes; batching it keeps the reader (often an HTTP upload) from
		// making a system call per piece.
		bw := bufio.NewWriterSize(pw, 1<<20)
		cw, err := c.NewWriter(bw)
		if err == nil {
			err = write(ctx, cw)
			if cerr := cw.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	return &producer{PipeReader: pr, cancel: cancel, done: done}
}

type producer struct {
	*io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Close stops the producing goroutine and waits for it to end.
func (p *producer) Close() error {
	p.once.Do(func() {
		p.cancel()
		p.PipeReader.CloseWithError(errClosed)
		<-p.done
	})
	return nil
}
