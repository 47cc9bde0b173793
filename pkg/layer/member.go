package layer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// memberLayer is a layer served from a member of a stored tar archive (a
// docker-archive), read in place: the archive is never unpacked. A member
// holding a plain tar is compressed on every read, as a stored tar is; a
// member holding a compressed blob is served verbatim, as a stored blob is.
type memberLayer struct {
	meta
	m descriptor.Member
	c compress.Compressor
}

var (
	_ Layer     = (*memberLayer)(nil)
	_ Describer = (*memberLayer)(nil)
	_ Sourcer   = (*memberLayer)(nil)
)

// memberTarLayer is a member holding a plain tar: its blob is compressed
// by this binary, so Reproducible asks about its compressor.
type memberTarLayer struct{ *memberLayer }

func (l memberTarLayer) compressor() descriptor.Compressor { return l.d.Compressor }

var _ compressing = memberTarLayer{}

func newMemberLayer(d descriptor.Layer) (Layer, error) {
	m := *d.Member
	c, err := compress.New(algorithmOf(d))
	if err != nil {
		return nil, fmt.Errorf("layer %s (member %s of archive %s): %w", d.Digest, m.Name, m.Archive, err)
	}
	if _, err := compress.New(archiveAlgorithm(m)); err != nil {
		return nil, fmt.Errorf("archive %s: %w", m.Archive, err)
	}
	l := &memberLayer{meta: meta{d}, m: m, c: c}
	if m.Blob {
		return l, nil
	}
	return memberTarLayer{l}, nil
}

// archiveAlgorithm is the compression of the archive file itself.
func archiveAlgorithm(m descriptor.Member) string {
	if m.Compression == "" {
		return descriptor.None
	}
	return m.Compression
}

// Uncompressed streams the layer's tar: the member itself, or the member
// decompressed when it holds a compressed blob.
func (l *memberLayer) Uncompressed(ctx context.Context) (io.ReadCloser, error) {
	r, closer, err := OpenMember(ctx, l.m)
	if err != nil {
		return nil, err
	}
	if !l.m.Blob {
		return verified(r, closer, l.d.DiffID, l.d.UncompressedSize, l.changed("diff_id", l.d.DiffID, l.d.UncompressedSize)), nil
	}
	zr, err := compress.NewReader(algorithmOf(l.d), r)
	if err != nil {
		closer.Close()
		return nil, fmt.Errorf("opening member %s of archive %s: %w", l.m.Name, l.m.Archive, err)
	}
	// A member that changed may no longer decompress: say which it is.
	r = &failedReader{r: zr, fail: func(err error) error {
		return &MismatchError{
			Index:  -1,
			Digest: l.d.Digest,
			What:   []string{"it no longer decompresses (" + err.Error() + ")"},
			Detail: fmt.Sprintf("member %s of archive %s changed since it was described; rebuild the image", l.m.Name, l.m.Archive),
		}
	}}
	return verified(r, closers{zr, closer}, l.d.DiffID, l.d.UncompressedSize, l.changed("diff_id", l.d.DiffID, l.d.UncompressedSize)), nil
}

// failedReader replaces the errors of r, other than io.EOF, by fail(err).
type failedReader struct {
	r    io.Reader
	fail func(error) error
}

func (f *failedReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		err = f.fail(err)
	}
	return n, err
}

// Compressed streams the blob: a member holding a blob verbatim, else the
// member's tar compressed as described ("none": the tar itself).
func (l *memberLayer) Compressed(ctx context.Context) (io.ReadCloser, error) {
	if !l.m.Blob && algorithmOf(l.d) == descriptor.None {
		return l.Uncompressed(ctx)
	}
	r, closer, err := OpenMember(ctx, l.m)
	if err != nil {
		return nil, err
	}
	if l.m.Blob {
		return verified(r, closer, l.d.Digest, l.d.Size, l.changed("digest", l.d.Digest, l.d.Size)), nil
	}
	return checkBlob(produce(ctx, l.c, func(ctx context.Context, w io.Writer) error {
		defer closer.Close()
		tr := verified(r, nil, l.d.DiffID, l.d.UncompressedSize, l.changed("diff_id", l.d.DiffID, l.d.UncompressedSize))
		if _, err := copyContext(ctx, w, tr); err != nil {
			return fmt.Errorf("reading member %s of archive %s: %w", l.m.Name, l.m.Archive, err)
		}
		return nil
	}), l.d), nil
}

// changed is the mismatch error of a stream that should hash to want.
func (l *memberLayer) changed(name string, want digest.Digest, size int64) func(Sum) error {
	return func(got Sum) error {
		return &MismatchError{
			Index:  -1,
			Digest: l.d.Digest,
			What:   compareSums(nil, name, got, Sum{want, size}),
			Detail: fmt.Sprintf("member %s of archive %s changed since it was described; rebuild the image", l.m.Name, l.m.Archive),
		}
	}
}

// Source says where the bytes come from.
func (l *memberLayer) Source() string {
	return fmt.Sprintf("member %s of archive %s", l.m.Name, l.m.Archive)
}

// OpenMember returns the content of member m, read in place: a section of
// a plain archive, or the decompressed archive from the member's offset. The
// caller MUST close the closer. The reader ends after m.Size bytes, or
// earlier when the archive is shorter than described.
func OpenMember(ctx context.Context, m descriptor.Member) (io.Reader, io.Closer, error) {
	f, err := os.Open(m.Archive)
	if err != nil {
		return nil, nil, fmt.Errorf("opening archive %s (for member %s): %w: rebuild the image descriptor", m.Archive, m.Name, err)
	}
	alg := archiveAlgorithm(m)
	if alg == descriptor.None {
		return io.NewSectionReader(f, m.Offset, m.Size), f, nil
	}
	zr, err := compress.NewReader(alg, bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("opening archive %s (for member %s): %w", m.Archive, m.Name, err)
	}
	c := closers{zr, f}
	n, err := copyContext(ctx, io.Discard, io.LimitReader(zr, m.Offset))
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("reading archive %s up to member %s: %w", m.Archive, m.Name, err)
	}
	if n < m.Offset {
		c.Close()
		return nil, nil, fmt.Errorf("archive %s ends after %d bytes, before member %s at byte %d: the archive changed since it was described; rebuild the image", m.Archive, n, m.Name, m.Offset)
	}
	return io.LimitReader(zr, m.Size), c, nil
}

// Magic numbers of compressed streams a member may hold.
var (
	gzipMagic  = []byte{0x1f, 0x8b}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// SniffCompression tells the compression of a stream from its first bytes:
// "gzip", "zstd" or "none" (a plain tar or anything else). Streams that
// Docker reads but nixoci does not (bzip2, xz) are an error.
func SniffCompression(head []byte) (string, error) {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return descriptor.Gzip, nil
	case bytes.HasPrefix(head, zstdMagic):
		return descriptor.Zstd, nil
	case bytes.HasPrefix(head, bzip2Magic):
		return "", errors.New("it is compressed with bzip2, which nixoci does not read: decompress it, or recompress it with gzip or zstd")
	case bytes.HasPrefix(head, xzMagic):
		return "", errors.New("it is compressed with xz, which nixoci does not read: decompress it, or recompress it with gzip or zstd")
	}
	return descriptor.None, nil
}

// DescribeMember reads a member's content from r to its end and returns the
// layer served from that member. A member holding a compressed blob (gzip
// or zstd, as newer `docker save` writes pulled layers) is described as it
// is and served verbatim. A member holding a plain tar is compressed with
// compression ("" is DefaultCompression, "none" leaves the tar as the
// blob), as a stored tar is. m.Size is set from what was read.
func DescribeMember(ctx context.Context, r io.Reader, m descriptor.Member, compression string, history *descriptor.History) (Layer, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, _ := br.Peek(8)
	alg, err := SniffCompression(head)
	if err != nil {
		return nil, fmt.Errorf("member %s of archive %s: %w", m.Name, m.Archive, err)
	}
	var l descriptor.Layer
	if alg != descriptor.None {
		s, err := Measure(ctx, alg, br)
		if err != nil {
			return nil, fmt.Errorf("reading member %s of archive %s: %w", m.Name, m.Archive, err)
		}
		m.Blob, m.Size = true, s.Blob.Size
		l = descriptor.Layer{
			MediaType:  descriptor.MediaType(alg),
			Digest:     s.Blob.Digest,
			Size:       s.Blob.Size,
			DiffID:     s.Tar.Digest,
			Compressor: descriptor.Compressor{Algorithm: alg},
		}
		l.UncompressedSize = s.Tar.Size
	} else {
		c, err := compressorFor(compression)
		if err != nil {
			return nil, fmt.Errorf("describing member %s of archive %s: %w", m.Name, m.Archive, err)
		}
		s, err := newSums(c, nil, true)
		if err != nil {
			return nil, fmt.Errorf("describing member %s of archive %s: %w", m.Name, m.Archive, err)
		}
		if _, err := copyContext(ctx, s.w, br); err != nil {
			return nil, fmt.Errorf("reading member %s of archive %s: %w", m.Name, m.Archive, err)
		}
		if err := s.finish(&l); err != nil {
			return nil, err
		}
		m.Blob, m.Size = false, l.UncompressedSize
	}
	l.Member, l.History = &m, history
	return FromDescriptor(l)
}
