package nix

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// TestSandboxedBuild builds an image and a layer chain in Nix's sandbox,
// where the builder sees only its inputs (Nix 2.8 also names .attrs.json
// by its path outside the sandbox there), and checks that a build without
// the sandbox gives the same bytes.
func TestSandboxedBuild(t *testing.T) {
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	e.addNixociBuild(t, dir, false)
	file := e.writeNix(t, dir, "sandbox.nix", "", "", `
  image = nixoci.buildImage {
    name = "sandboxed";
    copyToRoot = root;
    maxLayers = 3;
    layers = [ (nixoci.buildLayer { deps = [ bb ]; }) ];
    config.Cmd = [ "/bin/sh" ];
  };
`)
	r := e.Run(10*time.Minute, "nix-build", file, "-A", "image", "--no-out-link", "--option", "sandbox", "true")
	if r.Err != nil {
		if strings.Contains(r.Stderr, "sandbox") && !strings.Contains(r.Stderr, "nixoci") {
			testenv.Missing(t, "Nix's sandbox is not usable here: %s", testenv.Tail(r.Stderr, 5))
		}
		t.Fatalf("sandboxed nix-build: %v\n%s", r.Err, testenv.Tail(r.Stderr, 30))
	}
	out := strings.TrimSpace(r.Stdout)
	doc := loadImageDoc(t, out)
	if len(doc.Layers) != 2 {
		t.Errorf("sandboxed image %s has %d layers, want 2 (busybox below, root)", out, len(doc.Layers))
	}
	before, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// --check rebuilds without the sandbox and fails when the bytes differ.
	e.build(t, file, "image", "--option", "sandbox", "false", "--check")
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Errorf("%s changed after the unsandboxed rebuild", out)
	}
}
