package archive_test

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/archive"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// benchLayers and benchLayerMiB shape the benchmark archive: a docker
// save of benchLayers layers of benchLayerMiB MiB each, half of each file
// random and half text-like, so gzip compresses it about 2:1.
const (
	benchLayers   = 4
	benchLayerMiB = 32
)

// writeBenchArchive writes the benchmark archive, compressed with alg.
func writeBenchArchive(b *testing.B, file, alg string) {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var layers [][]byte
	var diffIDs []digest.Digest
	for i := range benchLayers {
		var buf []byte
		w := &sliceWriter{&buf}
		tw := tar.NewWriter(w)
		for j := range 8 {
			data := make([]byte, benchLayerMiB<<20/8)
			for k := range data {
				if k%2 == 0 {
					data[k] = byte(r.Uint32())
				} else {
					data[k] = 'a' + byte(k%13)
				}
			}
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("l%d/f%d", i, j), Size: int64(len(data)), Mode: 0o644})
			tw.Write(data)
		}
		tw.Close()
		layers = append(layers, buf)
		diffIDs = append(diffIDs, digest.FromBytes(buf))
	}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	c, _ := compress.New(alg)
	cw, _ := c.NewWriter(bw)
	tw := tar.NewWriter(cw)
	var names []string
	for i, l := range layers {
		name := fmt.Sprintf("%064x/layer.tar", i+1)
		names = append(names, name)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(l)), Mode: 0o644})
		tw.Write(l)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "config.json", Size: int64(len(cfg)), Mode: 0o644})
	tw.Write(cfg)
	m, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"bench:1"}, "Layers": names}})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "manifest.json", Size: int64(len(m)), Mode: 0o644})
	tw.Write(m)
	tw.Close()
	cw.Close()
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
}

type sliceWriter struct{ b *[]byte }

func (s *sliceWriter) Write(p []byte) (int, error) { *s.b = append(*s.b, p...); return len(p), nil }

// BenchmarkArchive measures a docker-archive base image of 4 × 32 MiB
// layers, plain and gzipped: indexing it (Open), describing its layers
// with no compression and with gzip (what a build does once), and
// serving the last layer's tar or every layer's tar in order (what a
// push to docker-daemon or `nixoci save` does). bytes/s is of the layers'
// tars.
func BenchmarkArchive(b *testing.B) {
	dir := b.TempDir()
	total := int64(benchLayers * benchLayerMiB << 20)
	for _, alg := range []string{descriptor.None, descriptor.Gzip} {
		file := filepath.Join(dir, "bench.tar."+alg)
		writeBenchArchive(b, file, alg)
		b.Run("open/"+alg, func(b *testing.B) {
			for b.Loop() {
				if _, err := archive.Open(ctx(b), file); err != nil {
					b.Fatal(err)
				}
			}
		})
		a, err := archive.Open(ctx(b), file)
		if err != nil {
			b.Fatal(err)
		}
		for _, comp := range []string{descriptor.None, descriptor.Gzip} {
			b.Run("describe-"+comp+"/"+alg, func(b *testing.B) {
				b.SetBytes(total)
				for b.Loop() {
					if _, err := a.Layers(ctx(b), 0, comp); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		layers, err := a.Layers(ctx(b), 0, descriptor.None)
		if err != nil {
			b.Fatal(err)
		}
		read := func(b *testing.B, i int) {
			r, err := layers[i].Uncompressed(ctx(b))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
		b.Run("serve-last/"+alg, func(b *testing.B) {
			b.SetBytes(layers[len(layers)-1].UncompressedSize())
			for b.Loop() {
				read(b, len(layers)-1)
			}
		})
		b.Run("serve-all/"+alg, func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				for i := range layers {
					read(b, i)
				}
			}
		})
	}
}
