package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// cacheLayers runs `nixoci layers` on s (three layers, root copied to /)
// with extra flags and env, and returns the document and stderr.
func cacheLayers(t *testing.T, s *store, env []string, extra ...string) ([]byte, string) {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	out := filepath.Join(t.TempDir(), "layers.json")
	args := append([]string{"layers", "-o", out, "--max-layers", "3", "--copy-to-root", s.Root}, extra...)
	args = append(args, s.Busybox, s.Root, s.Data)
	r := testenv.Cmd{Name: nixoci(t), Args: args, Env: env, Timeout: 2 * time.Minute}.Must(t, ctx)
	return testenv.ReadFile(t, out), r.Stderr
}

// statsRE reads the summary `nixoci layers --cache` prints.
var statsRE = regexp.MustCompile(`digest cache (\S+): (\d+) layers: (\d+) from the cache, (\d+) compressed`)

// TestCacheCLI: `nixoci layers --cache DIR` (or NIXOCI_CACHE) writes the
// same document as without it, cold and warm, for each compression, and
// says what it did.
func TestCacheCLI(t *testing.T) {
	s := newStore(t)
	cache := filepath.Join(t.TempDir(), "made", "cache")
	for _, alg := range []string{"gzip", "zstd", "none"} {
		t.Run(alg, func(t *testing.T) {
			want, _ := cacheLayers(t, s, nil, "--compression", alg)
			cold, coldErr := cacheLayers(t, s, nil, "--compression", alg, "--cache", cache)
			warm, warmErr := cacheLayers(t, s, []string{"NIXOCI_CACHE=" + cache}, "--compression", alg)
			if !bytes.Equal(cold, want) || !bytes.Equal(warm, want) {
				t.Fatalf("with the cache, cold:\n%s\nwarm:\n%s\nwithout:\n%s", cold, warm, want)
			}
			var doc descriptor.Layers
			if err := json.Unmarshal(want, &doc); err != nil {
				t.Fatal(err)
			}
			large := 0 // layers of 1 MiB or more are taken from the cache
			for _, l := range doc.Layers {
				if l.UncompressedSize >= 1<<20 {
					large++
				}
			}
			for _, c := range []struct {
				name, stderr string
				hits         int
			}{{"cold", coldErr, 0}, {"warm", warmErr, large}} {
				m := statsRE.FindStringSubmatch(c.stderr)
				if m == nil {
					t.Fatalf("%s: stderr has no digest cache summary:\n%s", c.name, c.stderr)
				}
				n := len(doc.Layers)
				if alg == "none" {
					n, c.hits = 0, 0 // nothing to memoise
				}
				if m[1] != cache || m[2] != fmt.Sprint(n) || m[3] != fmt.Sprint(c.hits) {
					t.Errorf("%s: summary %q, want %d layers, %d from the cache, in %s", c.name, m[0], n, c.hits, cache)
				}
			}
			if alg != "none" && large == 0 {
				t.Fatal("no layer of 1 MiB or more: the test cannot see hits")
			}
		})
	}
}

// TestCacheCLIConcurrent runs four `nixoci layers` on one cache at once,
// twice: every document is the one written without a cache.
func TestCacheCLIConcurrent(t *testing.T) {
	s := newStore(t)
	want, _ := cacheLayers(t, s, nil)
	cache := t.TempDir()
	for round := range 2 {
		var wg sync.WaitGroup
		got := make([][]byte, 4)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = cacheLayers(t, s, nil, "--cache", cache)
			}()
		}
		wg.Wait()
		for i, g := range got {
			if !bytes.Equal(g, want) {
				t.Errorf("round %d, process %d wrote\n%s\nwant\n%s", round, i, g, want)
			}
		}
	}
}

// TestCacheWrongEntry: an entry that says a layer compresses to other bytes
// (a poisoned cache) makes a descriptor whose copy fails before the
// destination commits the blob, and that `nixoci verify` rejects.
func TestCacheWrongEntry(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	cache := t.TempDir()
	clean := buildImage(t, ctx, s, "--cache", cache)
	// The largest layer is one the cache is trusted for.
	victim := clean.Image.Layers[0]
	for _, l := range clean.Image.Layers {
		if l.UncompressedSize > victim.UncompressedSize {
			victim = l
		}
	}
	const bogus = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	poisonEntry(t, cache, victim.DiffID.String(), bogus)

	img := buildImage(t, ctx, s, "--cache", cache)
	found := false
	for _, l := range img.Image.Layers {
		found = found || l.Digest == bogus
	}
	if !found {
		t.Fatalf("the rebuilt image does not use the poisoned entry; the test expects it to")
	}
	r := failing(t, ctx, []string{bogus, "digest cache"}, "verify", "nix:"+img.Path)
	t.Logf("nixoci verify: %s", r.Stderr)
	layout := filepath.Join(t.TempDir(), "layout")
	failing(t, ctx, []string{"digest cache"}, "copy", "nix:"+img.Path, "oci:"+layout+":v1")
	_, hex, _ := strings.Cut(bogus, ":")
	if _, err := os.Stat(filepath.Join(layout, "blobs", "sha256", hex)); err == nil {
		t.Errorf("the copy committed a blob under the poisoned digest")
	}
	// The clean image, built before the poisoning, still verifies.
	testenv.Must(t, ctx, nixoci(t), "verify", "nix:"+clean.Path)
}

// poisonEntry rewrites the cache entry of diffID (any compressor) to say
// digest, with a valid checksum: what a writer of the cache could do.
func poisonEntry(t *testing.T, cache, diffID, digest string) {
	t.Helper()
	dir := filepath.Join(cache, "nixoci-digests-v1", "entries")
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		file := filepath.Join(dir, de.Name())
		body, _, _ := bytes.Cut(testenv.ReadFile(t, file), []byte("\n"))
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("entry %s: %v", file, err)
		}
		if m["diff_id"] != diffID {
			continue
		}
		m["digest"] = digest
		body, _ = json.Marshal(m)
		sum := sha256.Sum256(body)
		os.Remove(file)
		testenv.WriteFile(t, file, string(body)+"\nsha256 "+hex.EncodeToString(sum[:])+"\n", 0o444)
		return
	}
	t.Fatalf("no cache entry for %s in %s", diffID, dir)
}
