package vm

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// scriptChanges are the changes every runAsRoot script of the tests makes
// (those the issue lists), which checkDocker and checkUmoci look for.
const scriptChanges = `echo 'app:x:1000:1000:app:/data:/bin/sh' >> /etc/passwd
echo 'app:x:1000:' >> /etc/group
mkdir /data
chown 1000:1000 /data
chmod 0750 /data
echo 'hello from runAsRoot' > /etc/motd
rm /etc/oldfile
rm -rf /olddir
mkdir /olddir
echo new > /olddir/new
`

// setupScript makes scriptChanges, plus a write under /nix/store that must
// be left out.
const setupScript = "#!/bin/sh\nset -e\n" + scriptChanges + `echo junk > /nix/store/junk
test "$HOME" = /root
test "$(id -u)" = 0
test -e /proc/self/status
test -e /dev/null
echo "script ran as $(id -u) in $PWD with PATH=$PATH"
`

// TestRunAsRoot runs the script in the VM, checks the layer tar, and then
// the whole image in Docker and through umoci.
func TestRunAsRoot(t *testing.T) {
	parts := requireVM(t)
	bin := nixociBinary(t)
	dir := t.TempDir()
	base := writeBaseImage(t, dir)
	script := filepath.Join(dir, "setup.sh")
	if err := os.WriteFile(script, []byte(setupScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	start := time.Now()
	r := run(20*time.Minute, bin, append([]string{"run-as-root", "--image", base, "--script", script, "-o", out}, parts.Flags()...)...)
	wall := time.Since(start)
	stderr := r.Stderr
	if r.Err != nil {
		t.Fatalf("run-as-root: %v\n%s", r.Err, stderr)
	}
	t.Logf("run-as-root took %v; it said:\n%s", wall.Round(time.Millisecond), stderr)
	host := probeKVM(t, parts)
	accel, vmWall, kvmAttempt := vmLine(t, stderr)
	fmt.Printf("runAsRoot (--accel auto; %s): ran under %s, VM wall time %s", host, accel, vmWall)
	if kvmAttempt != "" {
		fmt.Printf(" after %s trying KVM", kvmAttempt)
	}
	fmt.Printf("; whole run-as-root %v\n", wall.Round(time.Millisecond))
	checkAccel(t, host, stderr)
	if !strings.Contains(stderr, "/nix/store/junk") || strings.Count(stderr, "under /nix/store") != 1 {
		t.Errorf("run-as-root stderr = %q, want one warning naming /nix/store/junk", stderr)
	}

	t.Run("layers.json", func(t *testing.T) {
		ls, err := descriptor.LoadLayers(filepath.Join(out, "layers.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ls.Layers) != 1 {
			t.Fatalf("layers.json has %d layers, want 1", len(ls.Layers))
		}
		l := ls.Layers[0]
		tarFile := filepath.Join(out, "layer.tar")
		data, err := os.ReadFile(tarFile)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("sha256:%x", sha256.Sum256(data)); string(l.DiffID) != want || l.UncompressedSize != int64(len(data)) {
			t.Errorf("layer diffID, size = %s, %d, want %s, %d", l.DiffID, l.UncompressedSize, want, len(data))
		}
		if l.Tar != tarFile || l.History == nil || l.History.CreatedBy != "runAsRoot" {
			t.Errorf("layer tar, history = %q, %+v, want %q, created_by runAsRoot", l.Tar, l.History, tarFile)
		}
	})

	t.Run("layer tar", func(t *testing.T) {
		names, entries := readTar(t, filepath.Join(out, "layer.tar"))
		t.Logf("layer entries: %v", names)
		checks := []struct {
			name      string
			typ       byte
			uid, gid  int
			mode      int64
			body      string
			bodyMatch string
		}{
			{name: "data/", typ: tar.TypeDir, uid: 1000, gid: 1000, mode: 0o750},
			{name: "etc/motd", typ: tar.TypeReg, mode: 0o644, body: "hello from runAsRoot\n"},
			{name: "etc/.wh.oldfile", typ: tar.TypeReg},
			{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, bodyMatch: `(?m)^app:x:1000:1000:`},
			{name: "etc/group", typ: tar.TypeReg, mode: 0o644, bodyMatch: `(?m)^app:x:1000:`},
			{name: "olddir/", typ: tar.TypeDir, mode: 0o755},
			{name: "olddir/.wh..wh..opq", typ: tar.TypeReg},
			{name: "olddir/new", typ: tar.TypeReg, mode: 0o644, body: "new\n"},
		}
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) {
				e, ok := entries[c.name]
				if !ok {
					t.Fatalf("no entry %s in %v", c.name, names)
				}
				h := e.Header
				if h.Typeflag != c.typ || h.Uid != c.uid || h.Gid != c.gid {
					t.Errorf("%s: type %c owner %d:%d, want type %c owner %d:%d", c.name, h.Typeflag, h.Uid, h.Gid, c.typ, c.uid, c.gid)
				}
				if !strings.Contains(c.name, ".wh.") && h.Mode&0o7777 != c.mode {
					t.Errorf("%s: mode %o, want %o", c.name, h.Mode&0o7777, c.mode)
				}
				if c.body != "" && e.Body != c.body {
					t.Errorf("%s: content %q, want %q", c.name, e.Body, c.body)
				}
				if c.bodyMatch != "" && !regexp.MustCompile(c.bodyMatch).MatchString(e.Body) {
					t.Errorf("%s: content %q does not match %s", c.name, e.Body, c.bodyMatch)
				}
			})
		}
		seen := map[string]bool{}
		for _, n := range names {
			h := entries[n].Header
			if !h.ModTime.Equal(baseCreated) {
				t.Errorf("%s: mtime %v, want the image's created time %v", n, h.ModTime, baseCreated)
			}
			clean := strings.TrimSuffix(n, "/")
			for _, bad := range []string{"nix", "proc", "sys", "dev", "olddir/a", "olddir/b", "etc/oldfile"} {
				if clean == bad || strings.HasPrefix(clean, bad+"/") {
					t.Errorf("layer holds %s, which the script did not change or which must be left out", n)
				}
			}
			if parent := path.Dir(clean); parent != "." && !seen[parent+"/"] {
				t.Errorf("%s comes before its directory %s/", n, parent)
			}
			if seen[n] {
				t.Errorf("%s is in the layer twice", n)
			}
			seen[n] = true
		}
	})

	t.Run("deterministic", func(t *testing.T) {
		again := filepath.Join(dir, "again")
		start := time.Now()
		if r := run(20*time.Minute, bin, append([]string{"run-as-root", "--image", base, "--script", script, "-o", again, "--compression", "zstd"}, parts.Flags()...)...); r.Err != nil {
			t.Fatalf("run-as-root again: %v\n%s", r.Err, r.Stderr)
		}
		t.Logf("second run: %v", time.Since(start).Round(time.Millisecond))
		a, _ := os.ReadFile(filepath.Join(out, "layer.tar"))
		b, _ := os.ReadFile(filepath.Join(again, "layer.tar"))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("two runs of the same script gave different layer tars (%d and %d bytes)", len(a), len(b))
		}
		ls, err := descriptor.LoadLayers(filepath.Join(again, "layers.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := ls.Layers[0].Compressor.Algorithm; got != "zstd" {
			t.Errorf("--compression zstd: layer compressor %q", got)
		}
	})

	final := filepath.Join(dir, "final.json")
	must(t, time.Minute, bin, "image", "-o", final, "--name", "nixoci-test/run-as-root", "--tag", "e2e", "--from-image", base, filepath.Join(out, "layers.json"))

	t.Run("docker", func(t *testing.T) {
		testenv.RequireDocker(t)
		ref := "nixoci-test/run-as-root:e2e"
		must(t, 5*time.Minute, bin, "copy", "nix:"+final, "docker-daemon:"+ref)
		defer run(time.Minute, "docker", "rmi", "-f", ref)
		checkDocker(t, ref)
	})

	t.Run("umoci", func(t *testing.T) {
		testenv.RequireTools(t, "umoci")
		layout := filepath.Join(dir, "oci")
		must(t, 5*time.Minute, bin, "copy", "nix:"+final, "oci:"+layout+":e2e")
		checkUmoci(t, layout+":e2e", filepath.Join(dir, "bundle"))
	})
}

// probe prints what the runAsRoot script changed; probeWant is what it
// must print.
const probe = `cat /etc/motd; stat -c 'data %u:%g %a' /data; echo "olddir: $(ls /olddir)"; ` +
	`test -e /etc/oldfile && echo oldfile present; grep -c '^app:' /etc/passwd /etc/group`

var probeWant = []string{"hello from runAsRoot", "data 1000:1000 750", "olddir: new", "/etc/passwd:1", "/etc/group:1"}

// checkDocker runs probe in the image ref with Docker and checks that it
// shows every change of the script.
func checkDocker(t *testing.T, ref string) {
	t.Helper()
	got := must(t, 2*time.Minute, "docker", "run", "--rm", "--network", "none", ref, "/bin/sh", "-c", probe)
	for _, w := range probeWant {
		if !strings.Contains(got, w) {
			t.Errorf("docker run printed %q, want it to contain %q", got, w)
		}
	}
	if strings.Contains(got, "oldfile present") {
		t.Errorf("docker run: /etc/oldfile was not deleted: %q", got)
	}
}

// checkUmoci unpacks the image at layout:tag into bundle with umoci and
// checks that its root file system shows every change of the script.
func checkUmoci(t *testing.T, image, bundle string) {
	t.Helper()
	must(t, 5*time.Minute, "umoci", "unpack", "--image", image, bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	motd, err := os.ReadFile(filepath.Join(rootfs, "etc/motd"))
	if err != nil || string(motd) != "hello from runAsRoot\n" {
		t.Errorf("umoci: /etc/motd = %q, %v", motd, err)
	}
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
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1000 || st.Gid != 1000 || fi.Mode().Perm() != 0o750 || !fi.IsDir() {
		t.Errorf("umoci: /data is %v owned by %d:%d, want a 0750 directory owned by 1000:1000", fi.Mode(), st.Uid, st.Gid)
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if !strings.Contains(string(passwd), "app:x:1000:1000:") || !strings.HasPrefix(string(passwd), "root:") {
		t.Errorf("umoci: /etc/passwd = %q, want root and app", passwd)
	}
}
