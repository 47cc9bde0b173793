package compress

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Module is the module path of the library that implements gzip and zstd.
const Module = "github.com/klauspost/compress"

// Fixed levels. Changing one changes every compressed digest, so they are
// part of the recorded identity.
const (
	// GzipLevel is the klauspost/compress gzip level (what its
	// DefaultCompression means).
	GzipLevel = 5
	// ZstdLevel is the zstd level, mapped with zstd.EncoderLevelFromZstd
	// (SpeedDefault).
	ZstdLevel = 3
)

// ErrUnknownAlgorithm is wrapped by the error for an unsupported algorithm name.
var ErrUnknownAlgorithm = errors.New("unknown compression algorithm")

// Algorithms lists the accepted algorithm names.
func Algorithms() []string {
	return []string{descriptor.Gzip, descriptor.Zstd, descriptor.None}
}

// Compressor turns an uncompressed tar stream into a layer blob.
type Compressor interface {
	// Identity says what produces the bytes: algorithm, level and library.
	Identity() descriptor.Compressor
	// MediaType is the OCI layer media type of the blobs it writes.
	MediaType() string
	// NewWriter returns a writer compressing into w. The caller MUST Close
	// it to flush the stream; Close does not close w. The same input always
	// gives the same output, however it is split into Write calls.
	NewWriter(w io.Writer) (io.WriteCloser, error)
}

// New returns the compressor for algorithm: "gzip", "zstd" or "none".
func New(algorithm string) (Compressor, error) {
	switch algorithm {
	case descriptor.Gzip:
		return gzipCompressor{}, nil
	case descriptor.Zstd:
		return zstdCompressor{}, nil
	case descriptor.None:
		return noneCompressor{}, nil
	}
	return nil, unknown(algorithm)
}

func unknown(algorithm string) error {
	return fmt.Errorf("compression %q: %w: use one of %s", algorithm, ErrUnknownAlgorithm, strings.Join(Algorithms(), ", "))
}

// Reproduces reports whether this binary's compressor for id.Algorithm
// writes the same bytes as the one id describes: same algorithm, level and
// library version. "none" always reproduces. A library without a version
// (see Library) never matches, since nothing proves it equal.
func Reproduces(id descriptor.Compressor) bool {
	c, err := New(id.Algorithm)
	if err != nil {
		return false
	}
	mine := c.Identity()
	if id.Algorithm == descriptor.None {
		return true
	}
	if !strings.Contains(mine.Library, "@") || strings.HasSuffix(mine.Library, "@") {
		return false
	}
	return mine == id
}

// moduleVersion is the version of Module in go.mod. It is used only when
// the binary carries no module information for Module, as `go test`
// binaries do (their build info lists no dependencies); a test checks it
// against go.mod.
const moduleVersion = "v1.20.3"

// Library returns "github.com/klauspost/compress@VERSION" (following a
// replace directive) from the running binary's build information, or
// Module@moduleVersion when the binary has none for it. A replacement by a
// local directory has no version: Library then returns the directory path
// without "@", and Reproduces never trusts it.
func Library() string {
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, m := range bi.Deps {
			if m.Path != Module {
				continue
			}
			if r := m.Replace; r != nil {
				if r.Version == "" {
					return r.Path
				}
				return r.Path + "@" + r.Version
			}
			return m.Path + "@" + m.Version
		}
	}
	return Module + "@" + moduleVersion
}

// NewReader returns a reader that decompresses r, compressed with algorithm.
// The caller MUST Close it; that does not close r.
func NewReader(algorithm string, r io.Reader) (io.ReadCloser, error) {
	switch algorithm {
	case descriptor.Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("reading gzip stream: %w", err)
		}
		return zr, nil
	case descriptor.Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("reading zstd stream: %w", err)
		}
		return zr.IOReadCloser(), nil
	case descriptor.None:
		return io.NopCloser(r), nil
	}
	return nil, unknown(algorithm)
}

type gzipCompressor struct{}

func (gzipCompressor) Identity() descriptor.Compressor {
	return descriptor.Compressor{Algorithm: descriptor.Gzip, Level: GzipLevel, Library: Library()}
}

func (gzipCompressor) MediaType() string { return descriptor.MediaType(descriptor.Gzip) }

func (gzipCompressor) NewWriter(w io.Writer) (io.WriteCloser, error) {
	zw, err := gzip.NewWriterLevel(w, GzipLevel)
	if err != nil {
		return nil, fmt.Errorf("creating gzip writer: %w", err)
	}
	// No name, comment or extra field, OS "unknown" (255), and an mtime
	// field of 0 ("none"); a zero time.Time would not encode as 0.
	zw.ModTime = time.Unix(0, 0)
	return zw, nil
}

type zstdCompressor struct{}

func (zstdCompressor) Identity() descriptor.Compressor {
	return descriptor.Compressor{Algorithm: descriptor.Zstd, Level: ZstdLevel, Library: Library()}
}

func (zstdCompressor) MediaType() string { return descriptor.MediaType(descriptor.Zstd) }

func (zstdCompressor) NewWriter(w io.Writer) (io.WriteCloser, error) {
	// One encoder goroutine and no concurrent blocks: the output then
	// depends only on the input bytes.
	zw, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(ZstdLevel)),
		zstd.WithEncoderConcurrency(1),
		zstd.WithConcurrentBlocks(false),
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, fmt.Errorf("creating zstd writer: %w", err)
	}
	return zw, nil
}

type noneCompressor struct{}

func (noneCompressor) Identity() descriptor.Compressor {
	return descriptor.Compressor{Algorithm: descriptor.None}
}

func (noneCompressor) MediaType() string { return descriptor.MediaType(descriptor.None) }

func (noneCompressor) NewWriter(w io.Writer) (io.WriteCloser, error) {
	return nopWriteCloser{w}, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
