package tarstream

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Write writes the deterministic tar stream of paths to w and returns one
// Share per path (nil with WithoutShares).
//
// Entries of all paths are sorted bytewise by their path in the image, so
// parents come before children; implied parent directories are emitted once
// as 0555 root directories; directories provided by several paths are
// emitted once, as the first path has them; a file or symlink of a later
// path replaces one of an earlier path (see Replacements), and a symlink to
// a directory meeting another path's directory is merged as that directory
// unless the path has KeepDirlinks. Headers have mtime 1970-01-01T00:00:01Z
// (or the path's Mtime), owner 0:0 root:root and canonical Nix store modes
// (directories 0555, files 0444 or 0555, symlinks 0777) unless a path's
// Perms say otherwise. Hard links become regular files, symlinks are stored
// as is, and "~nix~case~hack~N" suffixes are stripped before the image path
// is cleaned and checked: no entry leaves its root (ErrEscapesRoot), and a
// suffix that hides "", "." or ".." is refused (ErrBadName).
//
// The walk happens before the first byte is written, so bad input (a
// missing path, a fifo, a conflict) fails before any output. w is written
// from a second goroutine in chunks of up to 1 MiB, so hashing in w runs
// in parallel with reading files.
func Write(ctx context.Context, w io.Writer, paths []descriptor.Path, opts ...Option) ([]Share, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	rs, err := compileAll(paths)
	if err != nil {
		return nil, err
	}
	entries, err := plan(ctx, rs, paths)
	if err != nil {
		return nil, err
	}
	s := &streamer{ctx: ctx, opts: &o, crcs: o.observe != nil || !o.noShares}
	if !o.noShares {
		s.shares = make([]hash.Hash, len(paths))
		s.fps = make([][]byte, len(paths))
		for i := range s.shares {
			s.shares[i] = sha256.New()
		}
	}
	s.out = newChunker(w, o.chunkSize)
	err = s.run(entries, rs)
	if cerr := s.out.close(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if o.noShares {
		return nil, nil
	}
	shares := make([]Share, len(paths))
	for i := range shares {
		shares[i] = Share{
			Digest:       digest.NewDigest(digest.SHA256, s.shares[i]),
			Fingerprints: base64.StdEncoding.EncodeToString(s.fps[i]),
		}
	}
	return shares, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type streamer struct {
	ctx    context.Context
	opts   *options
	out    *chunker
	crcs   bool
	shares []hash.Hash // per path
	fps    [][]byte    // per path: 4 bytes per entry
	cur    hash.Hash   // share of the entry being written
	crc    uint32
	hdr    []byte
}

func (s *streamer) run(entries []entry, rs []*rules) error {
	for i := range entries {
		e := &entries[i]
		if err := s.ctx.Err(); err != nil {
			return err
		}
		s.crc = 0
		if s.shares != nil {
			s.cur = s.shares[e.path]
		}
		s.hdr = appendHeader(s.hdr[:0], e)
		if err := s.write(s.hdr); err != nil {
			return err
		}
		if e.typ == tar.TypeReg && e.size > 0 {
			if err := s.copyFile(e, rs[e.path].root); err != nil {
				return err
			}
			if err := s.write(zeros[:padding(e.size)]); err != nil {
				return err
			}
		}
		if s.fps != nil {
			s.fps[e.path] = binary.BigEndian.AppendUint32(s.fps[e.path], s.crc)
		}
		if s.opts.observe != nil {
			s.opts.observe(Entry{Path: e.path, Name: e.tarName(), Source: e.src, Type: e.typ, Mode: e.mode, Size: e.size, Fingerprint: s.crc})
		}
	}
	// End of archive: two zero blocks, part of no share.
	s.cur, s.crcs = nil, false
	return s.write(zeros[:2*blockSize])
}

var zeros = make([]byte, 2*blockSize)

// account feeds bytes of the current entry to its share and fingerprint.
func (s *streamer) account(p []byte) {
	if s.cur != nil {
		s.cur.Write(p)
	}
	if s.crcs {
		s.crc = crc32.Update(s.crc, castagnoli, p)
	}
}

func (s *streamer) write(p []byte) error {
	s.account(p)
	for len(p) > 0 {
		buf, err := s.out.space()
		if err != nil {
			return err
		}
		n := copy(buf, p)
		s.out.advance(n)
		p = p[n:]
	}
	return nil
}

// copyFile reads e's content straight into the output chunks.
func (s *streamer) copyFile(e *entry, root string) error {
	f, err := os.Open(e.src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reading %s in store path %s: %w: it disappeared while streaming; was the store path garbage-collected?", e.src, root, ErrChanged)
		}
		return fmt.Errorf("reading %s in store path %s: %w", e.src, root, err)
	}
	defer f.Close()
	remaining := e.size
	for remaining > 0 {
		buf, err := s.out.space()
		if err != nil {
			return err
		}
		if int64(len(buf)) > remaining {
			buf = buf[:remaining]
		}
		n, rerr := f.Read(buf)
		if n > 0 {
			s.account(buf[:n])
			s.out.advance(n)
			remaining -= int64(n)
		}
		switch {
		case rerr == io.EOF && remaining > 0:
			return fmt.Errorf("reading %s in store path %s: %w: it is shorter than when listed (%d of %d bytes)", e.src, root, ErrChanged, e.size-remaining, e.size)
		case rerr != nil && rerr != io.EOF:
			return fmt.Errorf("reading %s in store path %s: %w", e.src, root, rerr)
		case n == 0 && rerr == nil:
			return fmt.Errorf("reading %s in store path %s: %w", e.src, root, io.ErrNoProgress)
		}
		if remaining > 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
	}
	// One more read must find the end: a file that grew would otherwise be
	// cut silently.
	var one [1]byte
	if n, _ := f.Read(one[:]); n > 0 {
		return fmt.Errorf("reading %s in store path %s: %w: it is longer than when listed (%d bytes)", e.src, root, ErrChanged, e.size)
	}
	return nil
}

// chunker fills fixed-size chunks and hands full ones to a goroutine that
// writes them to w, so the consumer of w works while files are read.
type chunker struct {
	w      io.Writer
	buf    []byte // chunk being filled; len is the fill level
	free   chan []byte
	full   chan []byte
	failed chan struct{} // closed when w returned an error
	done   chan struct{} // closed when the writer goroutine ended
	err    error         // set before failed is closed
}

const chunks = 3

func newChunker(w io.Writer, size int) *chunker {
	c := &chunker{
		w:      w,
		free:   make(chan []byte, chunks),
		full:   make(chan []byte, chunks),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.buf = make([]byte, 0, size)
	for i := 1; i < chunks; i++ {
		c.free <- make([]byte, 0, size)
	}
	go c.drain()
	return c
}

func (c *chunker) drain() {
	defer close(c.done)
	var err error
	for b := range c.full {
		if err == nil {
			if _, err = c.w.Write(b); err != nil {
				c.err = err
				close(c.failed)
			}
		}
		c.free <- b[:0]
	}
}

// space returns the unused part of the current chunk, at least one byte.
func (c *chunker) space() ([]byte, error) {
	if len(c.buf) == cap(c.buf) {
		if err := c.flush(); err != nil {
			return nil, err
		}
	}
	return c.buf[len(c.buf):cap(c.buf)], nil
}

func (c *chunker) advance(n int) { c.buf = c.buf[:len(c.buf)+n] }

func (c *chunker) flush() error {
	select {
	case <-c.failed:
		return c.err
	default:
	}
	c.full <- c.buf
	select {
	case c.buf = <-c.free:
		return nil
	case <-c.failed:
		return c.err
	}
}

// close writes what is left (unless !send: the stream failed) and waits
// for the writer goroutine.
func (c *chunker) close(send bool) error {
	if send && len(c.buf) > 0 {
		select {
		case <-c.failed:
		default:
			c.full <- c.buf
		}
	}
	close(c.full)
	<-c.done
	return c.err
}
