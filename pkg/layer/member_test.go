package layer_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// memberFixture is an archive holding a plain layer tar and a gzipped one,
// and where each member's content is in the (decompressed) archive.
type memberFixture struct {
	file    string
	plain   []byte // the tar of the layer
	members map[string]descriptor.Member
}

// countingReader counts what is read, to find members' offsets.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// mkArchive writes an archive (compressed with alg) with members
// "a/layer.tar" (a tar of store paths), "b.json" and "c/layer.tar.gz" (the
// same tar, gzipped) and finds each member by reading it back.
func mkArchive(t *testing.T, alg string) memberFixture {
	t.Helper()
	paths := mkStore(t, 2, 30<<10)
	lv, err := layer.Describe(ctx(t), layer.Spec{Paths: paths, Compression: descriptor.None})
	if err != nil {
		t.Fatal(err)
	}
	plain := readAll(t, lv, true)
	var gz bytes.Buffer
	c, _ := compress.New(descriptor.Gzip)
	zw, _ := c.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, m := range []struct {
		name string
		data []byte
	}{{"a/layer.tar", plain}, {"b.json", []byte(`{"x":1}`)}, {"c/layer.tar.gz", gz.Bytes()}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.name, Size: int64(len(m.data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	tw.Close()
	file := filepath.Join(t.TempDir(), "archive.tar")
	var out bytes.Buffer
	ac, err := compress.New(alg)
	if err != nil {
		t.Fatal(err)
	}
	aw, _ := ac.NewWriter(&out)
	aw.Write(raw.Bytes())
	aw.Close()
	if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f := memberFixture{file: file, plain: plain, members: map[string]descriptor.Member{}}
	cr := &countingReader{r: bytes.NewReader(raw.Bytes())}
	tr := tar.NewReader(cr)
	comp := alg
	if comp == descriptor.None {
		comp = ""
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f.members[h.Name] = descriptor.Member{Archive: file, Compression: comp, Name: h.Name, Offset: cr.n, Size: h.Size}
	}
	return f
}

// describeMember describes member name of f.
func describeMember(t *testing.T, f memberFixture, name, compression string) layer.Layer {
	t.Helper()
	m := f.members[name]
	r, c, err := layer.OpenMember(ctx(t), m)
	if err != nil {
		t.Fatalf("OpenMember(%s) = %v", name, err)
	}
	defer c.Close()
	l, err := layer.DescribeMember(ctx(t), r, m, compression, &descriptor.History{CreatedBy: "saved"})
	if err != nil {
		t.Fatalf("DescribeMember(%s) = %v", name, err)
	}
	return l
}

func TestMember(t *testing.T) {
	for _, archiveAlg := range []string{descriptor.None, descriptor.Gzip, descriptor.Zstd} {
		f := mkArchive(t, archiveAlg)
		for _, tc := range []struct {
			member, compression string
			blob                bool
		}{
			{"a/layer.tar", descriptor.Gzip, false},
			{"a/layer.tar", descriptor.Zstd, false},
			{"a/layer.tar", descriptor.None, false},
			{"c/layer.tar.gz", descriptor.Zstd, true}, // served as it is, whatever compression says
		} {
			t.Run(archiveAlg+"/"+tc.member+"/"+tc.compression, func(t *testing.T) {
				l := describeMember(t, f, tc.member, tc.compression)
				d := desc(l)
				if err := d.Validate(); err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				if d.Member == nil || d.Member.Blob != tc.blob || d.Member.Archive != f.file || d.Member.Name != tc.member {
					t.Fatalf("descriptor member = %+v, want archive %s, member %s, blob %v", d.Member, f.file, tc.member, tc.blob)
				}
				checkBlob(t, l)
				if got := readAll(t, l, true); !bytes.Equal(got, f.plain) {
					t.Errorf("Uncompressed() is not the member's tar")
				}
				wantAlg := tc.compression
				if tc.blob {
					wantAlg = descriptor.Gzip
				}
				if got := descriptor.AlgorithmOf(l.MediaType()); got != wantAlg {
					t.Errorf("media type %s is %s, want %s", l.MediaType(), got, wantAlg)
				}
				if tc.compression == descriptor.None && !tc.blob && (l.Digest() != l.DiffID()) {
					t.Errorf("compression none: digest %s, want the diff_id %s", l.Digest(), l.DiffID())
				}
				if tc.blob {
					m := f.members[tc.member]
					r, c, _ := layer.OpenMember(ctx(t), m)
					want, _ := io.ReadAll(r)
					c.Close()
					if !bytes.Equal(readAll(t, l, false), want) {
						t.Error("a blob member's Compressed() is not the member verbatim")
					}
					if err := layer.Reproducible(l); err != nil {
						t.Errorf("Reproducible(blob member) = %v, want nil: it is served as stored", err)
					}
				}
				src := l.(layer.Sourcer).Source()
				if !strings.Contains(src, tc.member) || !strings.Contains(src, f.file) {
					t.Errorf("Source() = %q, want the member and archive named", src)
				}
				again, err := layer.FromDescriptor(d)
				if err != nil {
					t.Fatalf("FromDescriptor(Descriptor()) = %v", err)
				}
				if again.Digest() != l.Digest() || again.DiffID() != l.DiffID() {
					t.Errorf("FromDescriptor(Descriptor()) = %s/%s, want %s/%s", again.Digest(), again.DiffID(), l.Digest(), l.DiffID())
				}
			})
		}
	}
}

// TestMemberChanged checks that a member whose bytes changed after it was
// described fails every read with an error naming the member and the
// archive, and that an archive cut short does too.
func TestMemberChanged(t *testing.T) {
	for _, archiveAlg := range []string{descriptor.None, descriptor.Gzip} {
		t.Run(archiveAlg, func(t *testing.T) {
			f := mkArchive(t, archiveAlg)
			plainMember := describeMember(t, f, "a/layer.tar", descriptor.Gzip)
			blobMember := describeMember(t, f, "c/layer.tar.gz", descriptor.Gzip)
			data, err := os.ReadFile(f.file)
			if err != nil {
				t.Fatal(err)
			}
			raw := data
			if archiveAlg != descriptor.None {
				zr, _ := compress.NewReader(archiveAlg, bytes.NewReader(data))
				raw, _ = io.ReadAll(zr)
			}
			// Flip one byte of a file's content in each member's tar.
			changed := append([]byte(nil), raw...)
			for _, name := range []string{"a/layer.tar", "c/layer.tar.gz"} {
				m := f.members[name]
				changed[m.Offset+m.Size-2048]++
			}
			write := func(b []byte) {
				out := b
				if archiveAlg != descriptor.None {
					var buf bytes.Buffer
					c, _ := compress.New(archiveAlg)
					w, _ := c.NewWriter(&buf)
					w.Write(b)
					w.Close()
					out = buf.Bytes()
				}
				if err := os.WriteFile(f.file, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(changed)
			for _, tc := range []struct {
				name   string
				l      layer.Layer
				member string
			}{{"plain tar", plainMember, "a/layer.tar"}, {"blob", blobMember, "c/layer.tar.gz"}} {
				for _, uncompressed := range []bool{false, true} {
					err := readErr(t, tc.l, uncompressed)
					if !errors.Is(err, layer.ErrMismatch) || !strings.Contains(err.Error(), tc.member) || !strings.Contains(err.Error(), f.file) {
						t.Errorf("%s (uncompressed %v): reading a changed member = %v, want ErrMismatch naming %s of %s", tc.name, uncompressed, err, tc.member, f.file)
					}
				}
			}
			// Cut short before the first member's end.
			write(raw[:f.members["a/layer.tar"].Offset+100])
			for _, l := range []layer.Layer{plainMember, blobMember} {
				err := readErr(t, l, true)
				if err == nil || !strings.Contains(err.Error(), f.file) {
					t.Errorf("reading a member of a cut archive = %v, want an error naming %s", err, f.file)
				}
			}
		})
	}
}

// readErr reads l to its end and returns the error.
func readErr(t *testing.T, l layer.Layer, uncompressed bool) error {
	t.Helper()
	open := l.Compressed
	if uncompressed {
		open = l.Uncompressed
	}
	r, err := open(ctx(t))
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.ReadAll(r)
	return err
}

func TestMemberDescriptorChecks(t *testing.T) {
	f := mkArchive(t, descriptor.None)
	d := desc(describeMember(t, f, "a/layer.tar", descriptor.Gzip))
	for _, tc := range []struct {
		name   string
		mutate func(d *descriptor.Layer)
		want   string
	}{
		{"relative archive", func(d *descriptor.Layer) { m := *d.Member; m.Archive = "archive.tar"; d.Member = &m }, "not an absolute path"},
		{"size differs", func(d *descriptor.Layer) { m := *d.Member; m.Size++; d.Member = &m }, "uncompressedSize"},
		{"unknown compression", func(d *descriptor.Layer) { m := *d.Member; m.Compression = "xz"; d.Member = &m }, `"xz"`},
		{"two sources", func(d *descriptor.Layer) { d.Blob = "/x" }, "only one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := d
			tc.mutate(&bad)
			_, err := layer.FromDescriptor(bad)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromDescriptor() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := layer.SniffCompression([]byte("BZh91AY")); err == nil || !strings.Contains(err.Error(), "bzip2") {
		t.Errorf("SniffCompression(bzip2) = %v, want an error naming bzip2", err)
	}
}
