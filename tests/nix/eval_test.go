package nix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// evalLets are extra bindings of the evaluation tests.
const evalLets = `
  # The library without runtimeShell and nix.
  bare = import %q { nixoci = builtins.storePath %q; };
  index = builtins.toFile "index.json" (builtins.toJSON {
    schemaVersion = 2;
    mediaType = "application/vnd.oci.image.index.v1+json";
    manifests = [ ];
  });
  # A chain of n layers, each built on the last.
  chain = n: builtins.foldl' (below: i: nixoci.buildLayer {
    deps = [ (mk "dep-${toString i}" "mkdir $out") ];
    layers = if below == null then [ ] else [ below ];
  }) null (builtins.genList (i: i) n);
`

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	lets := fmt.Sprintf(evalLets, filepath.Join(testenv.ModuleRoot(), "nix"), e.busybox)
	tests := []struct {
		name string
		expr string
		// want are substrings of the error: the function, the argument
		// and the accepted values.
		want []string
	}{
		{"contents and copyToRoot", `nixoci.buildImage { name = "x"; contents = root; copyToRoot = root; }`,
			[]string{"nixoci.buildImage", "copyToRoot", "contents", "not both"}},
		{"unknown compression", `nixoci.buildImage { name = "x"; compression = "xz"; }`,
			[]string{"nixoci.buildImage", "compression", `"gzip", "zstd" or "none"`, `"xz"`}},
		{"unknown compression in buildLayer", `nixoci.buildLayer { deps = [ root ]; compression = "lz4"; }`,
			[]string{"nixoci.buildLayer", "compression", `"gzip", "zstd" or "none"`}},
		{"perms entry without path", `nixoci.buildImage { name = "x"; copyToRoot = root; perms = [ { regex = ".*"; mode = "0700"; } ]; }`,
			[]string{"nixoci.buildImage", "perms entry 0", "`path`", "accepted attributes: path, regex, mode, uid, gid, uname, gname"}},
		{"perms entry with unknown attribute", `nixoci.buildImage { name = "x"; perms = [ { path = root; owner = 1; } ]; }`,
			[]string{"nixoci.buildImage", "perms entry 0", "owner", "accepted attributes"}},
		{"fromImage a string", `nixoci.buildImage { name = "x"; fromImage = "alpine:latest"; }`,
			[]string{"nixoci.buildImage", "fromImage", "nixoci.pullImage, nixoci.pullImageFromManifest or nixoci.buildImage", "alpine:latest"}},
		{"fromImage an attribute set", `nixoci.buildImage { name = "x"; fromImage = { imageName = "alpine"; }; }`,
			[]string{"nixoci.buildImage", "fromImage", "nixoci.pullImage", "docker-archive", "an attribute set"}},
		{"maxLayers zero", `nixoci.buildImage { name = "x"; maxLayers = 0; }`,
			[]string{"nixoci.buildImage", "maxLayers", "at least 1", "not 0"}},
		{"maxLayers not a number", `nixoci.buildLayer { deps = [ root ]; maxLayers = "10"; }`,
			[]string{"nixoci.buildLayer", "maxLayers", "at least 1"}},
		{"layers not from buildLayer", `nixoci.buildImage { name = "x"; layers = [ root ]; }`,
			[]string{"nixoci.buildImage", "layers", "nixoci.buildLayer"}},
		{"database without nix", `bare.buildImage { name = "x"; initializeNixDatabase = true; }`,
			[]string{"nixoci.buildImage", "initializeNixDatabase", "`nix`", "`pkgs`"}},
		{"copy script without shell", `(bare.buildImage { name = "x"; copyToRoot = root; }).copyToRegistry`,
			[]string{"nixoci.buildImage", "copy-to-registry", "`runtimeShell`"}},
		{"pullImage digest", `nixoci.pullImage { imageName = "r/x"; imageDigest = "latest"; sha256 = ""; }`,
			[]string{"nixoci.pullImage", "imageDigest", "sha256:"}},
		{"pullImageFromManifest index", `nixoci.pullImageFromManifest { imageName = "x"; imageManifest = index; }`,
			[]string{"nixoci.pullImageFromManifest", "index", "getManifest"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := e.writeNix(t, t.TempDir(), "bad.nix", "", lets, "drv = "+tc.expr+";")
			r := e.Run(time.Minute, "nix-instantiate", file, "-A", "drv")
			if r.Err == nil {
				t.Fatalf("nix-instantiate of %s succeeded, want an error", tc.expr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("error of %s = %q, want it to contain %q", tc.expr, testenv.Tail(r.Stderr, 10), w)
				}
			}
		})
	}
}

func TestLayerChainEvaluation(t *testing.T) {
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	lets := fmt.Sprintf(evalLets, filepath.Join(testenv.ModuleRoot(), "nix"), e.busybox)
	file := e.writeNix(t, dir, "chain.nix", "n", lets, `
  top = chain n;
  below = builtins.length (chain n).layersBelow;
  image = nixoci.buildImage { name = "chain"; layers = [ (chain n) ]; };
`)
	for _, n := range []int{1, 30, 60} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			below := strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", "--eval", file, "-A", "below", "--arg", "n", fmt.Sprint(n)))
			if below != fmt.Sprint(n-1) {
				t.Errorf("layersBelow of the top of a %d-layer chain has %s layers, want %d", n, below, n-1)
			}
			start := time.Now()
			drv := strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", file, "-A", "image", "--arg", "n", fmt.Sprint(n)))
			took := time.Since(start)
			if !strings.HasSuffix(drv, ".drv") {
				t.Fatalf("nix-instantiate printed %q, want a derivation", drv)
			}
			t.Logf("instantiating an image on a %d-layer chain took %s", n, took)
			if n <= 30 && took > time.Second {
				t.Errorf("instantiating an image on a %d-layer chain took %s, want well under a second", n, took)
			}
			// The image's derivation lists every layer of the chain once.
			show := e.Must(t, time.Minute, "nix", "show-derivation", drv)
			if got := strings.Count(show, "-layer.drv"); got != n {
				t.Errorf("the image derivation has %d layer inputs, want %d", got, n)
			}
		})
	}
}

// vendorHashRE finds the vendorHash of flake.nix.
var vendorHashRE = regexp.MustCompile(`vendorHash\s*=\s*"(sha256-[A-Za-z0-9+/=]+)"`)

// TestVendorHash checks that flake.nix's vendorHash is the hash of the
// vendor tree of go.mod, as buildGoModule computes it.
func TestVendorHash(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireTools(t, "go")
	root := testenv.ModuleRoot()
	flake, err := os.ReadFile(filepath.Join(root, "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := vendorHashRE.FindSubmatch(flake)
	if m == nil {
		t.Fatalf("flake.nix has no vendorHash = \"sha256-…\";")
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	e := testenv.NewNix(t, t.TempDir())
	r := testenv.Cmd{Name: "go", Args: []string{"mod", "vendor", "-o", vendor}, Dir: root, Timeout: 5 * time.Minute}.Run(context.Background())
	if r.Err != nil {
		t.Fatalf("go mod vendor: %v\n%s", r.Err, r.Stderr)
	}
	got := strings.TrimSpace(e.Must(t, 2*time.Minute, "nix", "--extra-experimental-features", "nix-command", "hash", "path", "--sri", vendor))
	if got != string(m[1]) {
		t.Errorf("flake.nix has vendorHash = %q, but the vendor tree of go.mod hashes to %q: set vendorHash = \"%s\"; in flake.nix", m[1], got, got)
	}
}
