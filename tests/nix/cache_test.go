package nix

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// digestCacheLets: the library once more with a digest cache (%[1]q the
// nix/ directory, %[2]q nixoci, %[3]q the cache), and an image made by
// either instantiation from a closure in which only app follows v.
const digestCacheLets = `
  cached = import %[1]q {
    nixoci = builtins.storePath %[2]q;
    runtimeShell = "${bb}/bin/sh";
    nix = "/usr";
    digestCache = %[3]q;
  };
  bad = digestCache: (import %[1]q { nixoci = builtins.storePath %[2]q; inherit digestCache; }).buildLayer { deps = [ bb ]; };
  # 2 MB, so that its layer is taken from the cache rather than checked.
  app = mk "app-${v}" "mkdir -p $out/bin; ${bb}/bin/busybox yes 'the app, version ${v}' | ${bb}/bin/busybox head -c 2000000 > $out/bin/data";
  image = lib: lib.buildImage {
    name = "cached";
    tag = "v";
    maxLayers = 3;
    copyToRoot = root;
    layers = [ (lib.buildLayer { deps = [ bb ]; }) ];
    config.Cmd = [ "/bin/cat" "${app}/bin/data" ];
  };
`

const digestCacheAttrs = `
  plain = image nixoci;
  withCache = image cached;
  relative = bad "var/cache";
  inStore = bad "${root}";
`

// TestDigestCache builds an image with and without the library's
// digestCache, unsandboxed and in the sandbox (with the directory in
// extra-sandbox-paths): the descriptors are the same, only the changed
// layer adds a cache entry, and a sandbox that does not show the directory
// fails the build, saying what to do.
func TestDigestCache(t *testing.T) {
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	e.addNixociBuild(t, dir, false) // static: runs in the sandbox too
	cache := filepath.Join(dir, "digest-cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	lets := fmt.Sprintf(digestCacheLets, filepath.Join(testenv.ModuleRoot(), "nix"), e.nixoci, cache)
	file := e.writeNix(t, dir, "cache.nix", "v", lets, digestCacheAttrs)
	entries := func() int {
		des, err := os.ReadDir(filepath.Join(cache, "nixoci-digests-v1", "entries"))
		if err != nil {
			t.Fatal(err)
		}
		return len(des)
	}
	build := func(attr, v string, opts ...string) string {
		t.Helper()
		return e.build(t, file, attr, append([]string{"--argstr", "v", v}, opts...)...)
	}
	same := func(a, b string) {
		t.Helper()
		if x, y := testenv.ReadFile(t, a), testenv.ReadFile(t, b); string(x) != string(y) {
			t.Errorf("%s and %s differ:\n%s\n%s", a, b, x, y)
		}
	}

	plain1, cached1 := build("plain", "1"), build("withCache", "1")
	if plain1 == cached1 {
		t.Fatalf("the image with digestCache is the same store path as without (%s): the attribute did not reach the derivation", plain1)
	}
	same(plain1, cached1)
	if n := len(loadImageDoc(t, cached1).Layers); n != 3 {
		t.Errorf("image has %d layers, want 3 (busybox below, app, root)", n)
	}
	first := entries()
	if first != 3 {
		t.Errorf("the cache has %d entries after the first build, want 3 (one per layer)", first)
	}

	// One path changed, built in the sandbox: one more entry.
	r := e.Run(10*time.Minute, "nix-build", file, "-A", "withCache", "--argstr", "v", "2", "--no-out-link",
		"--option", "sandbox", "true", "--option", "extra-sandbox-paths", cache)
	if r.Err != nil {
		if strings.Contains(r.Stderr, "sandbox") && !strings.Contains(r.Stderr, "nixoci") {
			testenv.Missing(t, "Nix's sandbox is not usable here: %s", testenv.Tail(r.Stderr, 5))
		}
		t.Fatalf("sandboxed nix-build with digestCache: %v\n%s", r.Err, testenv.Tail(r.Stderr, 30))
	}
	cached2 := strings.TrimSpace(r.Stdout)
	same(build("plain", "2"), cached2)
	if n := entries(); n != first+1 {
		t.Errorf("the cache has %d entries after a one-path change, want %d: only the changed layer is compressed", n, first+1)
	}

	// The sandbox does not show the directory unless told to.
	r = e.Run(10*time.Minute, "nix-build", file, "-A", "withCache", "--argstr", "v", "3", "--no-out-link",
		"--option", "sandbox", "true")
	if r.Err == nil || !strings.Contains(r.Stderr, "extra-sandbox-paths") || !strings.Contains(r.Stderr, cache) {
		t.Errorf("sandboxed build without the cache in extra-sandbox-paths = %v, want a failure naming %s and extra-sandbox-paths:\n%s", r.Err, cache, testenv.Tail(r.Stderr, 10))
	}

	// The derivations without digestCache do not mention it.
	for attr, want := range map[string]bool{"plain": false, "withCache": true} {
		drv := strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", file, "-A", attr, "--argstr", "v", "1"))
		if got := strings.Contains(e.Must(t, time.Minute, "nix", "show-derivation", drv), "digestCache"); got != want {
			t.Errorf("derivation of %s mentions digestCache: %v, want %v", attr, got, want)
		}
	}

	for _, attr := range []string{"relative", "inStore"} {
		r := e.Run(time.Minute, "nix-instantiate", file, "-A", attr, "--argstr", "v", "1")
		if r.Err == nil || !strings.Contains(r.Stderr, "digestCache must be an absolute path string of a directory outside the store") {
			t.Errorf("nix-instantiate -A %s = %v, want an error naming digestCache:\n%s", attr, r.Err, testenv.Tail(r.Stderr, 5))
		}
	}
}
