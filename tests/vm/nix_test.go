package vm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// nixImage is the test's Nix file: a busybox base image and an image on it
// whose runAsRoot makes scriptChanges (without #!, so the image's /bin/sh
// runs it; it reaches busybox through its closure). importArgs and
// imageArgs are JSON objects of more arguments for the import and for the
// runAsRoot image's buildImage.
const nixImage = `{ vmKernel ? null, nonce ? "", importArgs ? "{}", imageArgs ? "{}" }:
let
  bb = builtins.storePath %q;
  lib = import %q ({
    nixoci = builtins.storePath %q;
    runtimeShell = "/bin/sh";
    inherit vmKernel;
    vmModules = %q;
    qemu = %q;
  } // builtins.fromJSON importArgs);
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
  image = lib.buildImage ({
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
  } // builtins.fromJSON imageArgs);
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
	text := fmt.Sprintf(nixImage, bb, filepath.Join(testenv.ModuleRoot(), "nix"), nixoci, parts.Modules, parts.Qemu, indented)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("missing kernel is an evaluation error", func(t *testing.T) {
		r := e.Run(2*time.Minute, "nix-instantiate", file, "-A", "image")
		if r.Err == nil || !strings.Contains(r.Stderr, "vmKernel") {
			t.Errorf("nix-instantiate without vmKernel: %v, want an error naming vmKernel:\n%s", r.Err, r.Stderr)
		}
	})

	t.Run("runAsRootAccel and requireKVM", func(t *testing.T) {
		checkNixAccelArgs(t, e, file, parts.Kernel)
	})

	args := []string{"--argstr", "vmKernel", parts.Kernel, "--argstr", "nonce", fmt.Sprint(time.Now().UnixNano())}
	start := time.Now()
	r := e.Run(20*time.Minute, "nix-build", append([]string{file, "-A", "image", "--no-out-link"}, args...)...)
	took := time.Since(start)
	if r.Err != nil {
		t.Fatalf("nix-build: %v", r)
	}
	out := strings.TrimSpace(r.Stdout)
	img := out[strings.LastIndex(out, "\n")+1:]
	host := probeKVM(t, parts)
	accel, vmWall, kvmAttempt := vmLine(t, r.Stderr)
	fmt.Printf("runAsRoot through nix-build (%s): %v for base image and VM; the VM ran under %s for %s", host, took.Round(time.Millisecond), accel, vmWall)
	if kvmAttempt != "" {
		fmt.Printf(" after %s trying KVM", kvmAttempt)
	}
	fmt.Println()
	checkAccel(t, host, r.Stderr)
	// TCG time plus the KVM boot deadline, not runAsRootTimeout (900 s here).
	if took > 5*time.Minute {
		t.Errorf("nix-build took %v, want well under runAsRootTimeout (TCG time plus the KVM boot deadline)", took)
	}
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

// checkNixAccelArgs checks runAsRootAccel and requireKVM, given to the
// import (as buildImage's defaults) or to buildImage: bad values fail
// evaluation naming the function and the argument, and good ones reach the
// runAsRoot derivation as its accel and requiredSystemFeatures.
func checkNixAccelArgs(t *testing.T, e *testenv.Nix, file, kernel string) {
	for _, tc := range []struct {
		name                  string
		importArgs, imageArgs string
		// wantErr is a part of the evaluation error; else wantAccel and
		// wantKVMFeature are the runAsRoot derivation's.
		wantErr        string
		wantAccel      string
		wantKVMFeature bool
	}{
		{name: "defaults", wantAccel: "auto"},
		{name: "buildImage tcg", imageArgs: `{"runAsRootAccel": "tcg"}`, wantAccel: "tcg"},
		{name: "import tcg", importArgs: `{"runAsRootAccel": "tcg"}`, wantAccel: "tcg"},
		{name: "buildImage overrides import", importArgs: `{"runAsRootAccel": "tcg"}`, imageArgs: `{"runAsRootAccel": "kvm"}`, wantAccel: "kvm"},
		{name: "buildImage requireKVM", imageArgs: `{"requireKVM": true}`, wantAccel: "kvm", wantKVMFeature: true},
		{name: "import requireKVM", importArgs: `{"requireKVM": true}`, wantAccel: "kvm", wantKVMFeature: true},
		{name: "buildImage bad accel", imageArgs: `{"runAsRootAccel": "fast"}`, wantErr: `nixoci.buildImage: runAsRootAccel must be "auto", "kvm" or "tcg", not the string "fast"`},
		{name: "import bad accel", importArgs: `{"runAsRootAccel": "fast"}`, wantErr: `nixoci (import ./nix): runAsRootAccel must be "auto", "kvm" or "tcg", not the string "fast"`},
		{name: "requireKVM with tcg", imageArgs: `{"requireKVM": true, "runAsRootAccel": "tcg"}`, wantErr: `nixoci.buildImage: requireKVM = true needs KVM, so runAsRootAccel must be "auto" or "kvm", not "tcg"`},
		{name: "requireKVM not a bool", importArgs: `{"requireKVM": "yes"}`, wantErr: "nixoci (import ./nix): requireKVM must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{file, "-A", "image", "--argstr", "vmKernel", kernel}
			if tc.importArgs != "" {
				args = append(args, "--argstr", "importArgs", tc.importArgs)
			}
			if tc.imageArgs != "" {
				args = append(args, "--argstr", "imageArgs", tc.imageArgs)
			}
			r := e.Run(2*time.Minute, "nix-instantiate", args...)
			if tc.wantErr != "" {
				if r.Err == nil || !strings.Contains(r.Stderr, tc.wantErr) {
					t.Errorf("nix-instantiate = %v, want an error containing %q:\n%s", r.Err, tc.wantErr, r.Stderr)
				}
				return
			}
			if r.Err != nil {
				t.Fatalf("nix-instantiate: %v", r)
			}
			drv := strings.TrimSpace(r.Stdout)
			drv = drv[strings.LastIndex(drv, "\n")+1:]
			accel, features := runAsRootDrv(t, e, drv)
			if accel != tc.wantAccel || slices.Contains(features, "kvm") != tc.wantKVMFeature {
				t.Errorf("runAsRoot derivation: accel %q, requiredSystemFeatures %q; want accel %q, kvm feature %v", accel, features, tc.wantAccel, tc.wantKVMFeature)
			}
		})
	}
}

// runAsRootDrv finds the runAsRoot derivation among drv's inputs and
// returns its accel and requiredSystemFeatures (structured attributes).
func runAsRootDrv(t *testing.T, e *testenv.Nix, drv string) (string, []string) {
	t.Helper()
	out := e.Must(t, 2*time.Minute, "nix", "show-derivation", "--recursive", drv)
	var drvs map[string]struct {
		Env map[string]string `json:"env"`
	}
	if err := json.Unmarshal([]byte(out), &drvs); err != nil {
		t.Fatalf("nix show-derivation: %v", err)
	}
	for path, d := range drvs {
		if !strings.HasSuffix(path, "-run-as-root.drv") {
			continue
		}
		var attrs struct {
			Accel    string   `json:"accel"`
			Features []string `json:"requiredSystemFeatures"`
		}
		if err := json.Unmarshal([]byte(d.Env["__json"]), &attrs); err != nil {
			t.Fatalf("%s: structured attributes: %v", path, err)
		}
		return attrs.Accel, attrs.Features
	}
	t.Fatalf("no *-run-as-root.drv among the inputs of %s", drv)
	return "", nil
}
