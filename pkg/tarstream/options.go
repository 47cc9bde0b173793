package tarstream

import (
	"errors"

	digest "github.com/opencontainers/go-digest"
)

// Sentinel errors wrapped by Write's errors; test them with errors.Is.
var (
	// ErrUnsupportedType is wrapped when a path holds a socket, device or fifo.
	ErrUnsupportedType = errors.New("unsupported file type")
	// ErrEscapesRoot is wrapped when a rewrite puts an entry outside "/".
	ErrEscapesRoot = errors.New("rewritten path escapes the image root")
	// ErrBadName is wrapped when removing a "~nix~case~hack~N" suffix
	// would leave an empty name, "." or "..".
	ErrBadName = errors.New("name is empty, . or .. without its case-hack suffix")
	// ErrMissingPath is wrapped when an input store path does not exist.
	ErrMissingPath = errors.New("store path is missing")
	// ErrCollision is wrapped when two entries would have the same image
	// path and are not both directories.
	ErrCollision = errors.New("conflicting entries")
	// ErrChanged is wrapped when a file changes while it is streamed.
	ErrChanged = errors.New("file changed while streaming")
	// ErrBadRule is wrapped when a rewrite, ignore or perms rule is invalid.
	ErrBadRule = errors.New("invalid path rule")
)

// Share is one input path's part of the stream; its fields are exactly
// those of descriptor.Path with the same names.
type Share struct {
	// Digest is the sha256 of the bytes (headers, content, padding) of the
	// entries that came from this path, in stream order. Implied parent
	// directories belong to the path that caused them.
	Digest digest.Digest
	// Fingerprints is base64 (standard, padded) of one big-endian CRC-32C
	// (Castagnoli) per entry of this path, in stream order, over the same
	// bytes as Digest.
	Fingerprints string
}

// Entry is one entry of the stream, as passed to an observer.
type Entry struct {
	// Path is the index of the input path the entry came from.
	Path int
	// Name is the tar name: relative, no leading "./", directories end in "/".
	Name string
	// Source is the file the entry was read from; "" for an implied
	// parent directory.
	Source string
	// Type is the tar type flag: tar.TypeReg, tar.TypeDir or tar.TypeSymlink.
	Type byte
	// Mode is the permission bits written (including setuid, setgid, sticky).
	Mode int64
	// Size is the content size (regular files only).
	Size int64
	// Fingerprint is the entry's CRC-32C, as in Share.Fingerprints.
	Fingerprint uint32
}

// Option configures Write.
type Option func(*options)

type options struct {
	observe   func(Entry)
	noShares  bool
	chunkSize int
}

func defaults() options {
	return options{chunkSize: 1 << 20}
}

// WithObserver calls fn for every entry after its bytes have been written,
// in stream order, from the goroutine that called Write.
func WithObserver(fn func(Entry)) Option {
	return func(o *options) { o.observe = fn }
}

// WithoutShares skips the per-path digests and fingerprints; Write then
// returns nil shares. Use it when only the bytes matter (serving a blob).
func WithoutShares() Option {
	return func(o *options) { o.noShares = true }
}

// withChunkSize sets the output chunk size (tests).
func withChunkSize(n int) Option {
	return func(o *options) { o.chunkSize = n }
}
