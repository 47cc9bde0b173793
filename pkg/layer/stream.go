package layer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Sum is the sha256 digest and size of a byte stream.
type Sum struct {
	Digest digest.Digest
	Size   int64
}

// Digester counts and sha256-hashes what is written to it: the digest and
// size of a blob or tar as it streams past.
type Digester struct {
	h hash.Hash
	n int64
}

// NewDigester returns an empty Digester.
func NewDigester() *Digester { return &Digester{h: sha256.New()} }

func (d *Digester) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

// Digest is the sha256 digest of everything written so far.
func (d *Digester) Digest() digest.Digest { return digest.NewDigest(digest.SHA256, d.h) }

// Size is the number of bytes written so far.
func (d *Digester) Size() int64 { return d.n }

// Sum is Digest and Size together.
func (d *Digester) Sum() Sum { return Sum{d.Digest(), d.n} }

// Sums are a compressed blob's and its tar's digests and sizes.
type Sums struct {
	Blob, Tar Sum
}

// Measure reads a blob compressed with algorithm from r to its end, hashing
// it and, decompressed, its tar, in one pass. Bytes after the end of the
// compressed stream count as part of the blob.
func Measure(ctx context.Context, algorithm string, r io.Reader) (Sums, error) {
	blob, tar := NewDigester(), NewDigester()
	zr, err := compress.NewReader(algorithm, io.TeeReader(r, blob))
	if err != nil {
		return Sums{}, err
	}
	defer zr.Close()
	if _, err := copyContext(ctx, tar, zr); err != nil {
		return Sums{}, fmt.Errorf("decompressing: %w", err)
	}
	if _, err := copyContext(ctx, blob, r); err != nil {
		return Sums{}, err
	}
	return Sums{Blob: blob.Sum(), Tar: tar.Sum()}, nil
}

// compareSums appends to what a phrase for each way got differs from want.
func compareSums(what []string, name string, got, want Sum) []string {
	if got.Digest != want.Digest {
		what = append(what, fmt.Sprintf("%s %s, described %s", name, got.Digest, want.Digest))
	}
	if got.Size != want.Size {
		size := "size"
		if name == "diff_id" {
			size = "uncompressed size"
		}
		what = append(what, fmt.Sprintf("%s %d, described %d", size, got.Size, want.Size))
	}
	return what
}

// verified returns r as a ReadCloser (closing c, when not nil) that hashes
// what is read and, at the end, returns mismatch(what was read) instead of
// io.EOF unless it is want/size.
func verified(r io.Reader, c io.Closer, want digest.Digest, size int64, mismatch func(Sum) error) io.ReadCloser {
	return &verifyingReader{r: r, c: c, d: NewDigester(), want: Sum{want, size}, mismatch: mismatch}
}

type verifyingReader struct {
	r        io.Reader
	c        io.Closer
	d        *Digester
	want     Sum
	mismatch func(Sum) error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.d.Write(p[:n])
	if err == io.EOF {
		if got := v.d.Sum(); got != v.want {
			return n, v.mismatch(got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error {
	if v.c == nil {
		return nil
	}
	return v.c.Close()
}

// noCompression is the "none" compressor.
func noCompression() compress.Compressor {
	c, err := compress.New(descriptor.None)
	if err != nil {
		panic(err) // "none" is always known
	}
	return c
}

// errClosed is what the producer sees when the reader is closed early.
var errClosed = errors.New("layer reader closed")

// produce runs write in a goroutine, compressing its output with c into a
// pipe whose reading end it returns. An error from write ends the stream
// with that error (the bytes still buffered are not delivered).
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

// copyContext copies r to w in 1 MiB chunks, stopping when ctx is done.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
