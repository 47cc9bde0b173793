package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// ManifestName is the member listing a docker-archive's images.
const ManifestName = "manifest.json"

// maxJSON bounds the members kept in memory while indexing: manifest.json
// and image configs are a few KiB; anything bigger is not one.
const maxJSON = 16 << 20

// ErrNotArchive is wrapped by Open's error for a file that is not a tar
// archive holding manifest.json.
var ErrNotArchive = errors.New("not a docker-archive")

// Archive is the index of a docker-archive: its images, and where each of
// its members is.
type Archive struct {
	// Path is the archive file, absolute, symlinks resolved: descriptors
	// of its layers point at it.
	Path string
	// Compression is the archive file's own compression: "none", "gzip"
	// or "zstd".
	Compression string
	// Images are the entries of manifest.json, in order.
	Images []Image

	members map[string]member
	links   map[string]string
	json    map[string][]byte
}

// Image is one entry of a docker-archive's manifest.json.
type Image struct {
	// RepoTags are the names the image loads as ("name:tag"); may be empty.
	RepoTags []string
	// ConfigName is the member holding the image config, Config its bytes.
	ConfigName string
	Config     []byte
	// Layers are the members holding the layers, base first.
	Layers []string
}

// member is where a regular file's content is in the (decompressed) archive.
type member struct {
	offset, size int64
}

// manifestEntry is an entry of manifest.json, as Docker writes it.
type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// Open indexes the docker-archive at path: one pass over the archive that
// records where every member is and keeps manifest.json and the image
// configs. A compressed archive (gzip or zstd) is decompressed for it.
func Open(ctx context.Context, file string) (*Archive, error) {
	abs, err := filepath.Abs(file)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("reading docker-archive %s: %w", file, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("reading docker-archive %s: %w", file, err)
	}
	defer f.Close()
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	alg, err := layer.SniffCompression(head[:n])
	if err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", file, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading docker-archive %s: %w", file, err)
	}
	a := &Archive{Path: abs, Compression: alg, members: map[string]member{}, links: map[string]string{}, json: map[string][]byte{}}
	// tar.Reader reads exactly the header blocks before an entry's content,
	// so the position after Next is where the content starts.
	var src io.Reader = f
	pos := func() (int64, error) { return f.Seek(0, io.SeekCurrent) }
	if alg != descriptor.None {
		zr, err := compress.NewReader(alg, bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("reading docker-archive %s: %w", file, err)
		}
		defer zr.Close()
		cr := &countingReader{r: zr}
		src, pos = cr, func() (int64, error) { return cr.n, nil }
	}
	if err := a.scan(ctx, tar.NewReader(src), pos); err != nil {
		return nil, fmt.Errorf("reading docker-archive %s: %w", file, err)
	}
	if err := a.readManifest(); err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", file, err)
	}
	return a, nil
}

// scan records every member of the archive.
func (a *Archive) scan(ctx context.Context, tr *tar.Reader, pos func() (int64, error)) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if len(a.members) == 0 {
				return fmt.Errorf("%w: %w", ErrNotArchive, err)
			}
			return err
		}
		name := cleanName(h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			off, err := pos()
			if err != nil {
				return err
			}
			a.members[name] = member{offset: off, size: h.Size}
			if h.Size > maxJSON {
				continue
			}
			br := bufio.NewReader(tr)
			if first, err := br.Peek(1); err != nil || (first[0] != '{' && first[0] != '[') {
				continue
			}
			data, err := io.ReadAll(br)
			if err != nil {
				return fmt.Errorf("member %s: %w", name, err)
			}
			a.json[name] = data
		case tar.TypeSymlink:
			// docker save links a layer.tar to an earlier one with the same content.
			a.links[name] = cleanName(path.Join(path.Dir(name), h.Linkname))
		case tar.TypeLink:
			a.links[name] = cleanName(h.Linkname)
		}
	}
}

// readManifest parses manifest.json into Images.
func (a *Archive) readManifest() error {
	data, ok := a.json[ManifestName]
	if !ok {
		if len(a.members) == 0 {
			return fmt.Errorf("%w: it has no members", ErrNotArchive)
		}
		return fmt.Errorf("%w: it has no manifest.json (an archive of the old `docker save` format without manifest.json is not read; save the image again with a current docker or skopeo)", ErrNotArchive)
	}
	var entries []manifestEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("parsing manifest.json: %w", err)
	}
	if len(entries) == 0 {
		return errors.New("manifest.json lists no images")
	}
	for i, e := range entries {
		cfgName, ok := a.resolve(e.Config)
		if !ok {
			return fmt.Errorf("manifest.json entry %d: config %s is not in the archive", i, e.Config)
		}
		cfg, ok := a.json[cfgName]
		if !ok {
			return fmt.Errorf("manifest.json entry %d: config %s is not a JSON file of at most %d bytes", i, e.Config, maxJSON)
		}
		img := Image{RepoTags: e.RepoTags, ConfigName: cfgName, Config: cfg}
		for _, l := range e.Layers {
			name, ok := a.resolve(l)
			if !ok {
				return fmt.Errorf("manifest.json entry %d: layer %s is not in the archive", i, l)
			}
			img.Layers = append(img.Layers, name)
		}
		a.Images = append(a.Images, img)
	}
	return nil
}

// resolve returns the regular member a name refers to, following links.
func (a *Archive) resolve(name string) (string, bool) {
	name = cleanName(name)
	for range 16 {
		if _, ok := a.members[name]; ok {
			return name, true
		}
		target, ok := a.links[name]
		if !ok {
			return "", false
		}
		name = target
	}
	return "", false
}

// Member returns the descriptor of member name's location (links followed).
func (a *Archive) Member(name string) (descriptor.Member, bool) {
	resolved, ok := a.resolve(name)
	if !ok {
		return descriptor.Member{}, false
	}
	m := a.members[resolved]
	comp := a.Compression
	if comp == descriptor.None {
		comp = ""
	}
	return descriptor.Member{Archive: a.Path, Compression: comp, Name: resolved, Offset: m.offset, Size: m.size}, true
}

// Tags lists the RepoTags of every image, for messages.
func (a *Archive) Tags() string {
	var parts []string
	for i, img := range a.Images {
		tags := "no tags"
		if len(img.RepoTags) > 0 {
			tags = strings.Join(img.RepoTags, ", ")
		}
		parts = append(parts, fmt.Sprintf("image %d: %s", i, tags))
	}
	return strings.Join(parts, "; ")
}

// cleanName is a member name without "./" or "/" in front.
func cleanName(name string) string {
	name = path.Clean("/" + name)
	return strings.TrimPrefix(name, "/")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// LooksLikeArchive tells, from a file's first bytes, whether it may be a
// docker-archive (a tar, or a gzip or zstd stream) rather than a JSON
// descriptor.
func LooksLikeArchive(head []byte) bool {
	trimmed := bytes.TrimLeft(head, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] != '{'
}
