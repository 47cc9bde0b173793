package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// nixImage is the test's Nix file: a busybox base image and an image on it
// whose runAsRoot makes scriptChanges (without #!, so the image's /bin/sh
// runs it; it reaches busybox through its closure).
const nixImage = `{ vmKernel ? null, nonce ? "" }:
let
  bb = builtins.storePath %q;
  lib = import %q {
    nixoci = builtins.storePath %q;
    runtimeShell = "/bin/sh";
    inherit vmKernel;
    vmModules = %q;
    qemu = %q;
  };
  mk = name: script: builtins.derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "${bb}/bin/sh";
    args = [ "-c" script ];
  };
  root = mk "root" ''
    mkdir -p $out/bin $out/etc $out/olddir $out/tmp
    for a in sh cat chmod chown echo grep id ls mkdir rm stat test; do ln -s ${bb}/bin/busybox $out/bin/$a; done
    echo 'root:x:0:0:root:/root:/bin/sh' > $out/etc/passwd
    echo 'root:x:0:' > $out/etc/group
    echo old > $out/etc/oldfile
    echo a > $out/olddir/a
    echo b > $out/olddir/b
  '';
in
rec {
  base = lib.buildImage { name = "nixoci-test/run-as-root-nix-base"; copyToRoot = root; };
  image = lib.buildImage {
    name = "nixoci-test/run-as-root-nix";
    tag = "e2e";
    fromImage = base;
    config.Cmd = [ "/bin/sh" ];
    diskSize = 64;
    buildVMMemorySize = 256;
    runAsRootTimeout = 900;
    runAsRoot = ''
      # ${nonce}: a new script for every test run, so the VM really runs.
      set -e
%s
      ${bb}/bin/busybox echo "busybox reached through the script's closure"
    '';
  };
}
`

// TestNixBuildImage builds an image with runAsRoot through the nix/
// library with real Nix, ships it with copyToDockerDaemon and copyTo oci:,
// and checks it in Docker and with umoci.
func TestNixBuildImage(t *testing.T) {
	parts := requireVM(t)
	dir := t.TempDir()
	e := testenv.NewNix(t, dir)
	bin := nixociBinary(t)
	bb := e.AddBin(t, filepath.Join(dir, "busybox"), "busybox", testenv.StaticBusybox(t), "sh")
	nixoci := e.AddBin(t, filepath.Join(dir, "nixoci"), "nixoci", bin)
	file := filepath.Join(dir, "image.nix")
	indented := "      " + strings.ReplaceAll(strings.TrimSuffix(scriptChanges, "\n"), "\n", "\n      ")
	text := fmt.Sprintf(nixImage, bb, filepath.Join(testenv.ModuleRoot(), "nix"), nixoci, parts.modules, parts.qemu, indented)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("missing kernel is an evaluation error", func(t *testing.T) {
		r := e.Run(2*time.Minute, "nix-instantiate", file, "-A", "image")
		if r.Err == nil || !strings.Contains(r.Stderr, "vmKernel") {
			t.Errorf("nix-instantiate without vmKernel: %v, want an error naming vmKernel:\n%s", r.Err, r.Stderr)
		}
	})

	args := []string{"--argstr", "vmKernel", parts.kernel, "--argstr", "nonce", fmt.Sprint(time.Now().UnixNano())}
	start := time.Now()
	out := strings.TrimSpace(e.Must(t, 20*time.Minute, "nix-build", append([]string{file, "-A", "image", "--no-out-link"}, args...)...))
	img := out[strings.LastIndex(out, "\n")+1:]
	fmt.Printf("runAsRoot through nix-build: %v (base image and VM)\n", time.Since(start).Round(time.Millisecond))
	doc, err := descriptor.LoadImage(img)
	if err != nil {
		t.Fatal(err)
	}
	last := doc.Layers[len(doc.Layers)-1]
	if last.Tar == "" || last.History == nil || last.History.CreatedBy != "runAsRoot" || len(doc.Layers) < 2 {
		t.Fatalf("image layers end with %+v, want the runAsRoot layer (a stored tar) on top of the base", last)
	}
	_, entries := readTar(t, last.Tar)
	for _, n := range []string{"data/", "etc/motd", "etc/.wh.oldfile", "olddir/.wh..wh..opq", "olddir/new"} {
		if _, ok := entries[n]; !ok {
			t.Errorf("runAsRoot layer %s has no %s", last.Tar, n)
		}
	}

	t.Run("copyToDockerDaemon", func(t *testing.T) {
		testenv.RequireDocker(t)
		ref := "nixoci-test/run-as-root-nix:e2e"
		e.Must(t, 10*time.Minute, "nix", append([]string{"run", "-f", file, "image.copyToDockerDaemon"}, args...)...)
		defer run(time.Minute, "docker", "rmi", "-f", ref)
		checkDocker(t, ref)
	})

	t.Run("copyTo oci and umoci", func(t *testing.T) {
		testenv.RequireTools(t, "umoci")
		layout := filepath.Join(dir, "oci")
		e.Must(t, 10*time.Minute, "nix", append(append([]string{"run", "-f", file, "image.copyTo"}, args...), "--", "oci:"+layout+":e2e")...)
		checkUmoci(t, layout+":e2e", filepath.Join(dir, "bundle"))
	})
}
