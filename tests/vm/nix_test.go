package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

const nixConf = `build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
`

// nixEnv runs single-user Nix as root with its own configuration.
type nixEnv struct {
	t       *testing.T
	confDir string
}

func newNixEnv(t *testing.T, dir string) *nixEnv {
	t.Helper()
	for _, p := range []string{"nix", "nix-build", "nix-instantiate", "nix-store"} {
		if _, err := exec.LookPath(p); err != nil {
			missing(t, "%s is not installed (Debian package nix-bin)", p)
		}
	}
	if os.Geteuid() != 0 {
		missing(t, "single-user Nix needs root to write /nix")
	}
	e := &nixEnv{t: t, confDir: filepath.Join(dir, "nix-conf")}
	if err := os.MkdirAll(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.confDir, "nix.conf"), []byte(nixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// nix runs a Nix command; it returns stdout, stderr and the error.
func (e *nixEnv) nix(timeout time.Duration, name string, args ...string) (string, string, error) {
	e.t.Helper()
	return runEnv(e.t, timeout, []string{"NIX_CONF_DIR=" + e.confDir, "NIX_PATH="}, name, args...)
}

func (e *nixEnv) must(timeout time.Duration, name string, args ...string) string {
	e.t.Helper()
	stdout, stderr, err := e.nix(timeout, name, args...)
	if err != nil {
		e.t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	return strings.TrimSpace(stdout)
}

// addDir adds a directory holding bin/NAME (a copy of file) to the store.
func (e *nixEnv) addDir(dir, name, file string, links ...string) string {
	e.t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", name), data, 0o555); err != nil {
		e.t.Fatal(err)
	}
	for _, l := range links {
		if err := os.Symlink(name, filepath.Join(dir, "bin", l)); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.must(2*time.Minute, "nix-store", "--add", dir)
}

// nixImage is the test's Nix file: a busybox base image and an image on it
// whose runAsRoot makes the changes of setupScript (without #!, so the
// image's /bin/sh runs it; it reaches busybox through its closure).
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
      echo 'app:x:1000:1000:app:/data:/bin/sh' >> /etc/passwd
      echo 'app:x:1000:' >> /etc/group
      mkdir /data
      chown 1000:1000 /data
      chmod 0750 /data
      echo 'hello from runAsRoot' > /etc/motd
      rm /etc/oldfile
      rm -rf /olddir
      mkdir /olddir
      echo new > /olddir/new
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
	e := newNixEnv(t, dir)
	bin := nixociBinary(t)
	bbFile, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox is not installed (Debian package busybox-static)")
	}
	bb := e.addDir(filepath.Join(dir, "busybox"), "busybox", bbFile, "sh")
	nixoci := e.addDir(filepath.Join(dir, "nixoci"), "nixoci", bin)
	file := filepath.Join(dir, "image.nix")
	text := fmt.Sprintf(nixImage, bb, filepath.Join(moduleRoot(), "nix"), nixoci, parts.modules, parts.qemu)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("missing kernel is an evaluation error", func(t *testing.T) {
		_, stderr, err := e.nix(2*time.Minute, "nix-instantiate", file, "-A", "image")
		if err == nil || !strings.Contains(stderr, "vmKernel") {
			t.Errorf("nix-instantiate without vmKernel: %v, want an error naming vmKernel:\n%s", err, stderr)
		}
	})

	args := []string{"--argstr", "vmKernel", parts.kernel, "--argstr", "nonce", fmt.Sprint(time.Now().UnixNano())}
	start := time.Now()
	out := e.must(20*time.Minute, "nix-build", append([]string{file, "-A", "image", "--no-out-link"}, args...)...)
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

	const probe = `cat /etc/motd; stat -c 'data %u:%g %a' /data; echo "olddir: $(ls /olddir)"; ` +
		`test -e /etc/oldfile && echo oldfile present; grep -c '^app:' /etc/passwd /etc/group`
	want := []string{"hello from runAsRoot", "data 1000:1000 750", "olddir: new", "/etc/passwd:1", "/etc/group:1"}

	t.Run("copyToDockerDaemon", func(t *testing.T) {
		if _, _, err := run(t, 30*time.Second, "docker", "info"); err != nil {
			missing(t, "dockerd is not running (docker.io; start it with dockerd --bridge=none --iptables=false)")
		}
		ref := "nixoci-test/run-as-root-nix:e2e"
		e.must(10*time.Minute, "nix", append([]string{"run", "-f", file, "image.copyToDockerDaemon"}, args...)...)
		defer run(t, time.Minute, "docker", "rmi", "-f", ref) //nolint:errcheck // best-effort cleanup
		got := must(t, 2*time.Minute, "docker", "run", "--rm", "--network", "none", ref, "/bin/sh", "-c", probe)
		checkProbe(t, "docker run", got, want)
	})

	t.Run("copyTo oci and umoci", func(t *testing.T) {
		if _, err := exec.LookPath("umoci"); err != nil {
			missing(t, "umoci is not installed")
		}
		layout := filepath.Join(dir, "oci")
		e.must(10*time.Minute, "nix", append(append([]string{"run", "-f", file, "image.copyTo"}, args...), "--", "oci:"+layout+":e2e")...)
		bundle := filepath.Join(dir, "bundle")
		must(t, 5*time.Minute, "umoci", "unpack", "--image", layout+":e2e", bundle)
		rootfs := filepath.Join(bundle, "rootfs")
		if _, err := os.Lstat(filepath.Join(rootfs, "etc/oldfile")); !os.IsNotExist(err) {
			t.Errorf("umoci: /etc/oldfile still there (%v)", err)
		}
		ents, err := os.ReadDir(filepath.Join(rootfs, "olddir"))
		if err != nil || len(ents) != 1 || ents[0].Name() != "new" {
			t.Errorf("umoci: /olddir holds %v (%v), want only new", ents, err)
		}
		fi, err := os.Stat(filepath.Join(rootfs, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 || fi.Mode().Perm() != 0o750 {
			t.Errorf("umoci: /data is %v owned by %d:%d, want 0750 owned by 1000:1000", fi.Mode(), st.Uid, st.Gid)
		}
		if motd, err := os.ReadFile(filepath.Join(rootfs, "etc/motd")); err != nil || string(motd) != "hello from runAsRoot\n" {
			t.Errorf("umoci: /etc/motd = %q, %v", motd, err)
		}
	})
}
