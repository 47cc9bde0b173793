package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/archive"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

func ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// layerTar is a layer tar holding one file.
func layerTar(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(content)), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes()
}

// savedImage is one image of a test archive.
type savedImage struct {
	tags   []string
	layers [][]byte
}

type entry struct {
	name string
	data []byte
	link string // a symlink to this target instead
}

// writeArchive writes a docker-archive laid out as `docker save` does:
// <id>/layer.tar per layer (a symlink for a layer already written), a
// config per image, manifest.json last. It returns the configs.
func writeArchive(t *testing.T, file, alg string, images []savedImage) [][]byte {
	t.Helper()
	var entries []entry
	written := map[digest.Digest]string{}
	var manifest []map[string]any
	var configs [][]byte
	for i, img := range images {
		var diffIDs []digest.Digest
		var files []string
		for j, l := range img.layers {
			d := digest.FromBytes(l)
			diffIDs = append(diffIDs, d)
			dir := fmt.Sprintf("%064x", i*100+j+1)
			name := dir + "/layer.tar"
			if first, ok := written[d]; ok {
				entries = append(entries, entry{name: name, link: "../" + first})
			} else {
				written[d] = name
				entries = append(entries, entry{name: name, data: l})
			}
			files = append(files, name)
		}
		created := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		cfg := ocispec.Image{
			Created:  &created,
			Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
			Config:   ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{fmt.Sprintf("IMAGE=%d", i)}},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		}
		for j := range img.layers {
			cfg.History = append(cfg.History, ocispec.History{CreatedBy: fmt.Sprintf("step %d", j)}, ocispec.History{CreatedBy: "env", EmptyLayer: true})
		}
		data, _ := json.Marshal(cfg)
		configs = append(configs, data)
		cfgName := digest.FromBytes(data).Encoded() + ".json"
		entries = append(entries, entry{name: cfgName, data: data})
		manifest = append(manifest, map[string]any{"Config": cfgName, "RepoTags": img.tags, "Layers": files})
	}
	m, _ := json.Marshal(manifest)
	entries = append(entries, entry{name: "manifest.json", data: m})
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		if e.link != "" {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: e.name, Linkname: e.link})
			continue
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.data)), Mode: 0o644})
		tw.Write(e.data)
	}
	tw.Close()
	c, err := compress.New(alg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, _ := c.NewWriter(&out)
	w.Write(raw.Bytes())
	w.Close()
	if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return configs
}

func TestArchive(t *testing.T) {
	base := layerTar(t, "etc/base", "base")
	app := layerTar(t, "app/run", "app")
	other := layerTar(t, "other", "other")
	images := []savedImage{
		{tags: []string{"app:v1", "app:latest"}, layers: [][]byte{base, app}},
		{tags: []string{"registry.example.com:5000/other:v2"}, layers: [][]byte{base, other}},
		{tags: []string{"busybox:1"}, layers: [][]byte{base}},
		{tags: nil, layers: [][]byte{app, app}},
	}
	for _, alg := range []string{descriptor.None, descriptor.Gzip, descriptor.Zstd} {
		t.Run(alg, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "saved.tar")
			configs := writeArchive(t, file, alg, images)
			a, err := archive.Open(ctx(t), file)
			if err != nil {
				t.Fatalf("Open() = %v", err)
			}
			if a.Compression != alg || len(a.Images) != len(images) {
				t.Fatalf("Open() = compression %s, %d images; want %s, %d", a.Compression, len(a.Images), alg, len(images))
			}
			for _, tc := range []struct {
				name, tag string
				want      int
			}{
				{"", "", 0},          // neither: the first image
				{"other", "", 0},     // only one of them: the first, as dockerTools
				{"", "v2", 0},        // likewise
				{"app", "latest", 0}, // a second tag of the first image
				{"registry.example.com:5000/other", "v2", 1},
				{"docker.io/library/busybox", "1", 2}, // normalised names match
			} {
				got, err := a.Select(tc.name, tc.tag)
				if err != nil || got != tc.want {
					t.Errorf("Select(%q, %q) = %d, %v; want %d", tc.name, tc.tag, got, err, tc.want)
				}
			}
			if _, err := a.Select("app", "v9"); !errors.Is(err, archive.ErrNoSuchImage) || !strings.Contains(err.Error(), "app:v1, app:latest") {
				t.Errorf("Select(app, v9) = %v, want ErrNoSuchImage listing the tags there", err)
			}
			for i, img := range images {
				if diff := cmp.Diff(img.tags, a.Images[i].RepoTags); diff != "" {
					t.Errorf("image %d RepoTags (-want +got):\n%s", i, diff)
				}
				if !bytes.Equal(a.Images[i].Config, configs[i]) {
					t.Errorf("image %d config differs from the one written", i)
				}
				layers, err := a.Layers(ctx(t), i, descriptor.Gzip)
				if err != nil {
					t.Fatalf("Layers(%d) = %v", i, err)
				}
				if len(layers) != len(img.layers) {
					t.Fatalf("Layers(%d) has %d layers, want %d", i, len(layers), len(img.layers))
				}
				for j, l := range layers {
					if l.DiffID() != digest.FromBytes(img.layers[j]) {
						t.Errorf("image %d layer %d diff_id %s, want %s", i, j, l.DiffID(), digest.FromBytes(img.layers[j]))
					}
					r, err := l.Uncompressed(ctx(t))
					if err != nil {
						t.Fatal(err)
					}
					var got bytes.Buffer
					_, err = got.ReadFrom(r)
					r.Close()
					if err != nil || !bytes.Equal(got.Bytes(), img.layers[j]) {
						t.Errorf("image %d layer %d: Uncompressed() = %d bytes, %v; want the layer's tar", i, j, got.Len(), err)
					}
					d := l.(layer.Describer).Descriptor()
					if d.Member == nil || d.Member.Archive != a.Path || d.History == nil || d.History.CreatedBy != fmt.Sprintf("step %d", j) {
						t.Errorf("image %d layer %d descriptor: member %+v, history %+v; want served from %s with history step %d", i, j, d.Member, d.History, a.Path, j)
					}
					if descriptor.AlgorithmOf(l.MediaType()) != descriptor.Gzip {
						t.Errorf("image %d layer %d media type %s, want gzip as asked", i, j, l.MediaType())
					}
				}
			}
		})
	}
}

func TestArchiveErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, entries map[string]string) string {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for n, data := range entries {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Size: int64(len(data)), Mode: 0o644})
			tw.Write([]byte(data))
		}
		tw.Close()
		p := filepath.Join(dir, name)
		os.WriteFile(p, b.Bytes(), 0o644)
		return p
	}
	good := filepath.Join(dir, "good.tar")
	writeArchive(t, good, descriptor.None, []savedImage{{tags: []string{"a:1"}, layers: [][]byte{layerTar(t, "f", "x")}}})
	// The same archive whose config names another diff_id.
	damaged := filepath.Join(dir, "damaged.tar")
	data, _ := os.ReadFile(good)
	a, err := archive.Open(ctx(t), good)
	if err != nil {
		t.Fatal(err)
	}
	wrong := digest.FromString("other").Encoded()
	cfg := bytes.Replace(a.Images[0].Config, []byte(digest.FromBytes(layerTar(t, "f", "x")).Encoded()), []byte(wrong), 1)
	os.WriteFile(damaged, bytes.Replace(data, a.Images[0].Config, cfg, 1), 0o644)

	for _, tc := range []struct {
		name string
		file string
		want []string
		is   error
	}{
		{"no manifest", write("old.tar", map[string]string{"repositories": "{}", "abc/layer.tar": "x"}), []string{"old.tar", "no manifest.json"}, archive.ErrNotArchive},
		{"missing layer", write("missing.tar", map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["a:1"],"Layers":["nope/layer.tar"]}]`, "c.json": `{}`}), []string{"missing.tar", "nope/layer.tar", "not in the archive"}, nil},
		{"not a tar", writeFile(t, dir, "text", "hello, world, this is not a tar archive at all......"), []string{"text"}, nil},
		{"bzip2", writeFile(t, dir, "x.tar.bz2", "BZh91AY&SY"), []string{"x.tar.bz2", "bzip2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := archive.Open(ctx(t), tc.file)
			if err == nil {
				t.Fatalf("Open(%s) succeeded, want an error", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open(%s) = %v, want it to mention %q", tc.file, err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Open(%s) = %v, want errors.Is %v", tc.file, err, tc.is)
			}
		})
	}
	t.Run("diff_id mismatch", func(t *testing.T) {
		a, err := archive.Open(ctx(t), damaged)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Layers(ctx(t), 0, descriptor.None)
		if err == nil || !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("Layers() of an archive whose config names another diff_id = %v, want an error naming it", err)
		}
	})
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
