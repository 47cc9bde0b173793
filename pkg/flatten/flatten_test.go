package flatten_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/flatten"
)

// e is a tar entry of a test layer: a name ending in "/" is a directory,
// link "=target" is a hard link, "->target" a symlink; else a file.
type e struct {
	name, content string
	mode          int64
}

// memLayer is a layer whose tar is built from entries; it counts reads.
type memLayer struct {
	tar   []byte
	reads int
}

func (m *memLayer) Uncompressed(context.Context) (io.ReadCloser, error) {
	m.reads++
	return io.NopCloser(bytes.NewReader(m.tar)), nil
}

func mkLayer(t *testing.T, entries ...e) *memLayer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, x := range entries {
		h := &tar.Header{Name: x.name, Mode: x.mode, ModTime: time.Unix(1, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch {
		case strings.HasSuffix(x.name, "/"):
			h.Typeflag = tar.TypeDir
			if x.mode == 0 {
				h.Mode = 0o755
			}
		case strings.HasPrefix(x.content, "="):
			h.Typeflag, h.Linkname = tar.TypeLink, x.content[1:]
		case strings.HasPrefix(x.content, "->"):
			h.Typeflag, h.Linkname = tar.TypeSymlink, x.content[2:]
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(x.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(x.content))
		}
	}
	tw.Close()
	return &memLayer{tar: b.Bytes()}
}

// fsEntry is an entry of the flattened tar as a test sees it.
type fsEntry struct {
	Type    string // "dir", "file", "link", "symlink"
	Content string // file content, or link target
	Mode    int64
}

// flat flattens layers and returns the entries by path, checking the
// tar's order on the way: no whiteouts, no path twice, every directory
// before what it holds and every hard link after its target.
func flat(t *testing.T, layers ...*memLayer) map[string]fsEntry {
	t.Helper()
	ls := make([]flatten.Layer, len(layers))
	for i, l := range layers {
		ls[i] = l
	}
	var out bytes.Buffer
	if err := flatten.Write(context.Background(), &out, ls); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	for i, l := range layers {
		if l.reads != 2 {
			t.Errorf("layer %d was read %d times, want 2", i, l.reads)
		}
	}
	got := map[string]fsEntry{}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if strings.Contains(path.Base(name), ".wh.") {
			t.Errorf("the flattened tar holds the whiteout %s", h.Name)
		}
		if _, dup := got[name]; dup {
			t.Errorf("the flattened tar holds %s twice", h.Name)
		}
		if dir := path.Dir(name); dir != "." && name != "." {
			if p, ok := got[dir]; !ok || p.Type != "dir" {
				t.Errorf("%s comes before its directory %s", h.Name, dir)
			}
		}
		var fe fsEntry
		fe.Mode = h.Mode
		switch h.Typeflag {
		case tar.TypeDir:
			fe.Type = "dir"
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			fe.Type, fe.Content = "file", string(data)
		case tar.TypeLink:
			fe.Type, fe.Content = "link", h.Linkname
			if target, ok := got[h.Linkname]; !ok || target.Type != "file" {
				t.Errorf("hard link %s comes before its target %s (or the target is no file)", h.Name, h.Linkname)
			}
		case tar.TypeSymlink:
			fe.Type, fe.Content = "symlink", h.Linkname
		}
		got[name] = fe
	}
	return got
}

func dir(mode int64) fsEntry         { return fsEntry{Type: "dir", Mode: mode} }
func file(content string) fsEntry    { return fsEntry{Type: "file", Content: content, Mode: 0o644} }
func hardlink(target string) fsEntry { return fsEntry{Type: "link", Content: target, Mode: 0o644} }
func symlink(target string) fsEntry  { return fsEntry{Type: "symlink", Content: target, Mode: 0o644} }
func implied() fsEntry               { return dir(0o755) }

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers [][]e
		want   map[string]fsEntry
	}{
		{
			name: "whiteouts remove files and directories of the layers below",
			layers: [][]e{
				{{"etc/", "", 0}, {"etc/a", "a", 0}, {"etc/b", "b", 0}, {"gone/", "", 0}, {"gone/deep/x", "x", 0}},
				{{"etc/.wh.a", "", 0}, {".wh.gone", "", 0}, {"etc/c", "c", 0}},
			},
			want: map[string]fsEntry{"etc": dir(0o755), "etc/b": file("b"), "etc/c": file("c")},
		},
		{
			name: "an opaque directory hides what the layers below had in it, not its own layer's",
			layers: [][]e{
				{{"opq/", "", 0o700}, {"opq/old", "old", 0}, {"opq/sub/", "", 0}, {"opq/sub/deep", "d", 0}, {"keep", "k", 0}},
				{{"opq/", "", 0o750}, {"opq/new", "new", 0}, {"opq/.wh..wh..opq", "", 0}},
			},
			want: map[string]fsEntry{"opq": dir(0o750), "opq/new": file("new"), "keep": file("k")},
		},
		{
			name: "a whiteout does not remove what its own layer adds",
			layers: [][]e{
				{{"n", "old", 0}},
				{{".wh.n", "", 0}, {"n", "new", 0}},
			},
			want: map[string]fsEntry{"n": file("new")},
		},
		{
			name: "a file replaced by a directory, and a directory by a file",
			layers: [][]e{
				{{"thing", "a file", 0}, {"d/", "", 0}, {"d/x", "x", 0}},
				{{"thing/", "", 0}, {"thing/inside", "in", 0}, {"d", "now a file", 0}},
			},
			want: map[string]fsEntry{"thing": implied(), "thing/inside": file("in"), "d": file("now a file")},
		},
		{
			name: "a path below a file of a lower layer makes it a directory",
			layers: [][]e{
				{{"p", "file", 0}},
				{{"p/q", "q", 0}},
			},
			want: map[string]fsEntry{"p": implied(), "p/q": file("q")},
		},
		{
			name: "hard links: kept to a surviving target, made a file when the target was replaced",
			layers: [][]e{
				{{"f", "one", 0}, {"link1", "=f", 0}, {"link1b", "=link1", 0}, {"g", "g", 0}, {"glink", "=g", 0}},
				{{"f", "two", 0}, {"link2", "=f", 0}},
			},
			want: map[string]fsEntry{
				"f":      file("two"),
				"link1":  file("one"), // its target f was replaced: link1 holds the old content
				"link1b": hardlink("link1"),
				"link2":  hardlink("f"),
				"g":      file("g"),
				"glink":  hardlink("g"),
			},
		},
		{
			name: "a hard link whose target was whited out",
			layers: [][]e{
				{{"dir/", "", 0}, {"dir/t", "t", 0}, {"l", "=dir/t", 0}},
				{{".wh.dir", "", 0}},
			},
			want: map[string]fsEntry{"l": file("t")},
		},
		{
			name: "directories come before their contents, from the top layer's entry",
			layers: [][]e{
				{{"a/b/c", "c", 0}, {"d/", "", 0o700}, {"d/x", "x", 0}, {"s", "->d/x", 0}},
				{{"d/", "", 0o755}, {"a/", "", 0o711}},
			},
			want: map[string]fsEntry{"a": dir(0o711), "a/b": implied(), "a/b/c": file("c"), "d": dir(0o755), "d/x": file("x"), "s": symlink("d/x")},
		},
		{
			name: "names with ./ and the root entry",
			layers: [][]e{
				{{"./", "", 0o755}, {"./x", "x", 0}},
				{{"./.wh.x", "", 0}, {"./y", "y", 0}},
			},
			want: map[string]fsEntry{".": dir(0o755), "y": file("y")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var layers []*memLayer
			for _, l := range tc.layers {
				layers = append(layers, mkLayer(t, l...))
			}
			got := flat(t, layers...)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("flattened (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	bad := mkLayer(t, e{"l", "=nowhere", 0})
	var out bytes.Buffer
	err := flatten.Write(context.Background(), &out, []flatten.Layer{mkLayer(t, e{"x", "x", 0}), bad})
	if err == nil || !strings.Contains(err.Error(), "layer 1") || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("Write() of a hard link to nothing = %v, want an error naming layer 1 and the target", err)
	}
	garbage := &memLayer{tar: []byte(strings.Repeat("not a tar ", 100))}
	err = flatten.Write(context.Background(), &out, []flatten.Layer{garbage})
	if err == nil || !strings.Contains(err.Error(), "layer 0") {
		t.Errorf("Write() of a layer that is no tar = %v, want an error naming layer 0", err)
	}
}

// TestWriteBig checks a layer set with many entries stays in order.
func TestWriteBig(t *testing.T) {
	var lower, upper []e
	for i := range 300 {
		lower = append(lower, e{fmt.Sprintf("d%d/f%d", i%7, i), fmt.Sprint(i), 0})
		if i%3 == 0 {
			upper = append(upper, e{fmt.Sprintf("d%d/.wh.f%d", i%7, i), "", 0})
		}
	}
	got := flat(t, mkLayer(t, lower...), mkLayer(t, upper...))
	files := 0
	for _, fe := range got {
		if fe.Type == "file" {
			files++
		}
	}
	if files != 200 {
		t.Errorf("%d files survive, want 200", files)
	}
}
