package tarstream_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// file describes one file of a synthetic store path.
type file struct {
	name string // relative to the store path; "" is the store path itself
	dir  bool
	link string // symlink target
	data string
	mode os.FileMode
}

// mkPath creates store/name with files and returns its absolute path.
func mkPath(t *testing.T, store, name string, files ...file) string {
	t.Helper()
	root := filepath.Join(store, name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case f.dir:
			err = os.MkdirAll(p, 0o755)
		case f.link != "":
			err = os.Symlink(f.link, p)
		default:
			mode := f.mode
			if mode == 0 {
				mode = 0o644
			}
			err = os.WriteFile(p, []byte(f.data), mode)
			if err == nil {
				err = os.Chmod(p, mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tarEntry is one entry read back with archive/tar, with where its bytes
// lie in the stream.
type tarEntry struct {
	hdr        *tar.Header
	data       []byte
	start, end int64 // [start, end) includes headers, content and padding
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readTar parses stream with archive/tar and locates each entry's bytes.
func readTar(t *testing.T, stream []byte) []tarEntry {
	t.Helper()
	cr := &countingReader{r: bytes.NewReader(stream)}
	tr := tar.NewReader(cr)
	var out []tarEntry
	var next int64 // start of the next entry
	for {
		start := next
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar.Reader.Next() after %d entries: %v", len(out), err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		next = cr.n + (512-int64(len(data))%512)%512
		out = append(out, tarEntry{hdr: hdr, data: data, start: start, end: next})
	}
	// What follows the last entry must be exactly two zero blocks.
	rest := stream[next:]
	if len(rest) != 1024 || !bytes.Equal(rest, make([]byte, 1024)) {
		t.Errorf("stream ends with %d bytes after the last entry, want 1024 zero bytes", len(rest))
	}
	return out
}

func write(t *testing.T, paths []descriptor.Path, opts ...tarstream.Option) ([]byte, []tarstream.Share) {
	t.Helper()
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shares, err := tarstream.Write(ctx, &buf, paths, opts...)
	if err != nil {
		t.Fatalf("Write() = %v", err)
	}
	return buf.Bytes(), shares
}

func writeErr(t *testing.T, paths []descriptor.Path) error {
	t.Helper()
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := tarstream.Write(ctx, &buf, paths)
	if err == nil {
		t.Fatal("Write() = nil error, want an error")
	}
	if buf.Len() != 0 {
		t.Errorf("Write() wrote %d bytes before failing on bad input, want 0", buf.Len())
	}
	return err
}

func checkErr(t *testing.T, err, want error, substrings ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("error %q does not wrap %v", err, want)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func names(entries []tarEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.hdr.Name)
	}
	return out
}

func find(t *testing.T, entries []tarEntry, name string) tarEntry {
	t.Helper()
	for _, e := range entries {
		if e.hdr.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %q in %q", name, names(entries))
	return tarEntry{}
}

// rel turns an absolute path into its tar name.
func rel(p string) string { return strings.TrimPrefix(p, "/") }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func netListenUnix(p string) (net.Listener, error) { return net.Listen("unix", p) }
