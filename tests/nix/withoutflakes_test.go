package nix

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// mockNixpkgs is a nixpkgs stand-in with what the README's example and the
// library touch: callPackage (which hands back the nixoci built by the
// test when asked for ./package.nix), hello and the tools.
const mockNixpkgs = `{ ... }:
let
  bb = builtins.storePath %q;
in
rec {
  stdenv.hostPlatform.system = builtins.currentSystem;
  runtimeShell = "${bb}/bin/sh";
  callPackage = fn: args:
    assert baseNameOf (toString fn) == "package.nix";
    builtins.storePath %q;
  hello = builtins.derivation {
    name = "hello-2.12";
    system = builtins.currentSystem;
    builder = "${bb}/bin/sh";
    args = [ "-c" "mkdir -p $out/bin; echo '#!${bb}/bin/sh' > $out/bin/hello; echo 'echo Hello, world!' >> $out/bin/hello; chmod 555 $out/bin/hello" ];
  };
}
`

// TestWithoutFlakes builds the README's "Without flakes" example as it is
// written, with this repository checked out as ./nixoci and <nixpkgs> a
// stand-in.
func TestWithoutFlakes(t *testing.T) {
	testenv.RequireNix(t)
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	e.addNixoci(t, dir)

	readme := string(testenv.ReadFile(t, filepath.Join(testenv.ModuleRoot(), "README.md")))
	m := regexp.MustCompile("(?s)### Without flakes\n.*?```nix\n(.*?)```").FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```nix block under ### Without flakes")
	}
	example := m[1]

	project := filepath.Join(dir, "project")
	testenv.WriteFile(t, filepath.Join(project, "image.nix"), example, 0o644)
	if err := os.Symlink(testenv.ModuleRoot(), filepath.Join(project, "nixoci")); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "nixpkgs", "default.nix"), fmt.Sprintf(mockNixpkgs, e.busybox, e.nixoci), 0o644)
	nixPath := []string{"-I", "nixpkgs=" + filepath.Join(dir, "nixpkgs")}

	outs := strings.Fields(e.Must(t, 10*time.Minute, "nix-build", append([]string{filepath.Join(project, "image.nix"), "--no-out-link"}, nixPath...)...))
	out := outs[len(outs)-1]
	doc := loadImageDoc(t, out)
	if doc.Name != "hello" || len(doc.Layers) != 1 {
		t.Errorf("%s: image %q with %d layers, want hello with one", out, doc.Name, len(doc.Layers))
	}
	script := e.build(t, filepath.Join(project, "image.nix"), "copyToRegistry", nixPath...)
	if _, err := os.Stat(filepath.Join(script, "bin", "copy-to-registry")); err != nil {
		t.Errorf("nix-build image.nix -A copyToRegistry: %v", err)
	}
	// The library runs the nixoci that <nixpkgs>' callPackage gave for
	// ./package.nix.
	got := strings.Trim(strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", append([]string{"--eval", "--expr",
		fmt.Sprintf("(import %q { pkgs = import <nixpkgs> { }; }).nixoci", filepath.Join(project, "nixoci"))}, nixPath...)...)), `"`)
	if got != e.nixoci {
		t.Errorf("the library's nixoci is %s, want %s", got, e.nixoci)
	}
}

// packageMock calls package.nix with a stand-in of nixpkgs' lib and
// buildGoModule of the two styles nixpkgs has had: until 24.11 CGO_ENABLED
// is an argument (and env.CGO_ENABLED is refused), later it goes in env.
const packageMock = `
let
  lib = {
    version = "mock";
    versionAtLeast = a: b: builtins.compareVersions a b >= 0;
    functionArgs = f: f.__functionArgs or (builtins.functionArgs f);
    optionalAttrs = c: a: if c then a else { };
    platforms.unix = [ ];
    fileset = {
      toSource = { root, fileset }: root;
      unions = x: x;
      maybeMissing = x: x;
    };
  };
  # 24.05: CGO_ENABLED is a formal argument.
  oldStyle = {
    __functionArgs = { CGO_ENABLED = true; src = false; };
    __functor = _: args: assert !(args ? env && args.env ? CGO_ENABLED); args;
  };
  # 25.11: it must go in env.
  newStyle = args: assert !(args ? CGO_ENABLED); args;
  call = args: import %q ({ inherit lib; } // args);
  flake = builtins.readFile %q;
in
{
  new = let p = call { go.version = "1.25.1"; buildGoModule = newStyle; }; in {
    cgo = p.env.CGO_ENABLED;
    static = p.passthru.static.env.CGO_ENABLED;
    staticName = p.passthru.static.pname;
    vendorHashInFlake = builtins.match ".*vendorHash = \"${p.vendorHash}\";.*" flake != null;
  };
  old = let p = call { go.version = "1.22.8"; buildGoModule = oldStyle; buildGo125Module = oldStyle; }; in {
    cgo = p.CGO_ENABLED;
    static = p.passthru.static.CGO_ENABLED;
  };
  tooOld = (call { go.version = "1.22.8"; buildGoModule = oldStyle; }).pname;
}
`

// TestPackageNix evaluates package.nix against both buildGoModule styles
// and a nixpkgs without Go 1.25.
func TestPackageNix(t *testing.T) {
	testenv.RequireNix(t)
	e := newNixEnv(t, t.TempDir())
	root := testenv.ModuleRoot()
	file := filepath.Join(t.TempDir(), "package-mock.nix")
	testenv.WriteFile(t, file, fmt.Sprintf(packageMock, filepath.Join(root, "package.nix"), filepath.Join(root, "flake.nix")), 0o644)
	for attr, want := range map[string]string{
		"new": `{"cgo":"1","static":"0","staticName":"nixoci-static","vendorHashInFlake":true}`,
		"old": `{"cgo":"1","static":"0"}`,
	} {
		got := strings.TrimSpace(e.Must(t, time.Minute, "nix-instantiate", "--eval", "--strict", "--json", file, "-A", attr))
		if got != want {
			t.Errorf("package.nix with the %s buildGoModule: %s, want %s", attr, got, want)
		}
	}
	r := e.Run(time.Minute, "nix-instantiate", "--eval", file, "-A", "tooOld")
	if r.Err == nil || !strings.Contains(r.Stderr, "Go 1.25") || !strings.Contains(r.Stderr, "25.11") {
		t.Errorf("package.nix with Go 1.22 and no buildGo125Module: %v, want an error naming Go 1.25 and nixpkgs 25.11:\n%s", r.Err, r.Stderr)
	}
}
