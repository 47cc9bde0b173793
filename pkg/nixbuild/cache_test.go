package nixbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDigestCache: the layers and image builders use the digestCache
// attribute, write what they write without it, and fail, naming what to
// do, when the directory is missing.
func TestDigestCache(t *testing.T) {
	store := fakeStore(t, "app", "lib")
	refs := map[string][]string{"app": {"lib"}}
	ctx := context.Background()
	cacheDir := t.TempDir()
	build := func(kind string, cache any) []byte {
		t.Helper()
		dir := t.TempDir()
		out := filepath.Join(dir, "0123456789abcdefghijklmnopqrstuv-out")
		attrs := map[string]any{
			"outputs": map[string]string{"out": out}, "compression": "gzip", "maxLayers": 2,
			"closure": graphJSON(store, refs),
		}
		if kind == "layers" {
			attrs["deps"], attrs["reproducible"] = []string{store["app"]}, true
		} else {
			attrs["imageName"], attrs["configPaths"], attrs["arch"], attrs["os"] = "app", []string{store["app"]}, "amd64", "linux"
			attrs["created"] = "1970-01-01T00:00:01Z"
		}
		if cache != nil {
			attrs[digestCacheAttr] = cache
		}
		if err := Run(ctx, kind, writeAttrs(t, t.TempDir(), attrs), dir, nil); err != nil {
			t.Fatalf("Run(%s, digestCache %v) = %v", kind, cache, err)
		}
		if kind == "layers" {
			out = filepath.Join(out, LayersFileName)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, kind := range []string{"layers", "image"} {
		without := build(kind, nil)
		for round := range 2 {
			if got := build(kind, cacheDir); !bytes.Equal(got, without) {
				t.Errorf("%s with digestCache (round %d) wrote\n%s\nwithout:\n%s", kind, round, got, without)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(cacheDir, "nixoci-digests-v1", "entries"))
	if err != nil || len(entries) != 2 {
		t.Errorf("the cache has %d entries (%v), want 2: one per layer, shared by layers and image", len(entries), err)
	}

	for _, tc := range []struct {
		name  string
		cache any
		want  string
	}{
		{"missing", filepath.Join(cacheDir, "nope"), "extra-sandbox-paths"},
		{"relative", "cache", "absolute directory path"},
		{"not a string", 3, "absolute directory path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			attrs := map[string]any{
				"outputs": map[string]string{"out": filepath.Join(dir, "out")}, "compression": "gzip", "maxLayers": 1,
				"closure": graphJSON(store, refs), "deps": []string{store["app"]}, "reproducible": true,
				digestCacheAttr: tc.cache,
			}
			err := Run(ctx, "layers", writeAttrs(t, t.TempDir(), attrs), dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run(digestCache %v) = %v, want an error containing %q", tc.cache, err, tc.want)
			}
		})
	}
}
