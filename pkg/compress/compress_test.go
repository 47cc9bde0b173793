package compress_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// sample is 3 MiB of half random, half repetitive bytes: larger than the
// compressors' internal blocks.
func sample() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 3<<20)
	for i := range b {
		if (i/4096)%2 == 0 {
			b[i] = byte(r.Uint32())
		} else {
			b[i] = "nix store "[i%10]
		}
	}
	return b
}

// compressIn writes data in pieces of chunk bytes.
func compressIn(t *testing.T, c compress.Compressor, data []byte, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := c.NewWriter(&out)
	if err != nil {
		t.Fatalf("NewWriter() = %v", err)
	}
	for len(data) > 0 {
		n := min(chunk, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatalf("Write() = %v", err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return out.Bytes()
}

func TestRoundTripAndStability(t *testing.T) {
	data := sample()
	for _, alg := range compress.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			c, err := compress.New(alg)
			if err != nil {
				t.Fatalf("New(%q) = %v", alg, err)
			}
			if got, want := c.MediaType(), descriptor.MediaType(alg); got != want {
				t.Errorf("MediaType() = %q, want %q", got, want)
			}
			first := compressIn(t, c, data, 1<<20)
			if alg != descriptor.None && len(first) >= len(data) {
				t.Errorf("compressed %d bytes to %d", len(data), len(first))
			}
			// Same bytes again, and whatever the write sizes.
			for _, chunk := range []int{1 << 20, 1000, len(data)} {
				if again := compressIn(t, c, data, chunk); !bytes.Equal(again, first) {
					t.Errorf("writes of %d bytes give different output", chunk)
				}
			}
			r, err := compress.NewReader(alg, bytes.NewReader(first))
			if err != nil {
				t.Fatalf("NewReader() = %v", err)
			}
			defer r.Close()
			back, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			if !bytes.Equal(back, data) {
				t.Error("decompressed bytes differ from the input")
			}
		})
	}
}

func TestGzipHeader(t *testing.T) {
	c, _ := compress.New(descriptor.Gzip)
	out := compressIn(t, c, []byte("x"), 1)
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || zr.Comment != "" || zr.ModTime.Unix() != 0 || zr.OS != 255 || zr.Extra != nil {
		t.Errorf("gzip header = %+v, want no name, comment, mtime (0) or extra, OS 255", zr.Header)
	}
}

func TestUnknown(t *testing.T) {
	_, err := compress.New("lz4")
	if !errors.Is(err, compress.ErrUnknownAlgorithm) || !strings.Contains(err.Error(), "gzip, zstd, none") || !strings.Contains(err.Error(), "lz4") {
		t.Errorf("New(lz4) = %v, want ErrUnknownAlgorithm listing the accepted values", err)
	}
	if _, err := compress.NewReader("lz4", strings.NewReader("")); !errors.Is(err, compress.ErrUnknownAlgorithm) {
		t.Errorf("NewReader(lz4) = %v, want ErrUnknownAlgorithm", err)
	}
}

func TestIdentity(t *testing.T) {
	lib := compress.Library()
	if !regexp.MustCompile(`^github\.com/klauspost/compress@v\d+\.\d+\.\d+`).MatchString(lib) {
		t.Fatalf("Library() = %q, want the module path with a version", lib)
	}
	gz, _ := compress.New(descriptor.Gzip)
	zs, _ := compress.New(descriptor.Zstd)
	no, _ := compress.New(descriptor.None)
	tests := []struct {
		name string
		id   descriptor.Compressor
		want bool
	}{
		{"own gzip", gz.Identity(), true},
		{"own zstd", zs.Identity(), true},
		{"none", no.Identity(), true},
		{"none from elsewhere", descriptor.Compressor{Algorithm: descriptor.None, Library: "nix2container"}, true},
		{"other level", descriptor.Compressor{Algorithm: descriptor.Gzip, Level: 9, Library: lib}, false},
		{"other library version", descriptor.Compressor{Algorithm: descriptor.Zstd, Level: compress.ZstdLevel, Library: compress.Module + "@v1.0.0"}, false},
		{"other tool", descriptor.Compressor{Algorithm: descriptor.Gzip, Library: "nix2container"}, false},
		{"unknown algorithm", descriptor.Compressor{Algorithm: "lz4"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := compress.Reproduces(tc.id); got != tc.want {
				t.Errorf("Reproduces(%+v) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
	if id := gz.Identity(); id.Algorithm != descriptor.Gzip || id.Level != compress.GzipLevel || id.Library != lib {
		t.Errorf("gzip Identity() = %+v", id)
	}
}

// TestLibraryMatchesGoMod keeps the fallback version in step with go.mod.
func TestLibraryMatchesGoMod(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/klauspost/compress (v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod does not require github.com/klauspost/compress")
	}
	if want := compress.Module + "@" + string(m[1]); compress.Library() != want {
		t.Errorf("Library() = %q, want %q from go.mod (update moduleVersion)", compress.Library(), want)
	}
}

// TestLibraryInBinary checks that a real binary reads the version from its
// build information.
func TestLibraryInBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "libversion")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./testdata/libversion")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != compress.Library() {
		t.Errorf("binary's Library() = %q, want %q", got, compress.Library())
	}
}
