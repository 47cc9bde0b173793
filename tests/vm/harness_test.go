package vm

// What the machine (and .ci/run) must provide:
//   - qemu-system-x86 (qemu-system-x86_64) and linux-image-cloud-amd64 (a
//     kernel in /boot with its modules in /lib/modules/VERSION); or set
//     NIXOCI_TEST_VM_KERNEL and NIXOCI_TEST_VM_MODULES. No KVM is needed:
//     without /dev/kvm, or with one that cannot boot a guest, the VM runs
//     under TCG. Which of the three this host has is probed once, without
//     nixoci (probeKVM), and the tests check that the right accelerator ran.
//   - busybox-static (/bin/busybox) for the base image.
//   - go, to build a static nixoci (CGO_ENABLED=0) used as host tool and as
//     the VM's init; NIXOCI_TEST_NIXOCI may name a prebuilt static one.
//   - docker.io with dockerd running, and umoci, for the image checks.
//   - nix-bin (Nix 2.8, single-user as root) for the Nix library test.
// Outside CI (CI unset) a missing component skips the tests that need it;
// with CI=true it fails them. Nothing but 127.0.0.1 is contacted (the VM
// has no network at all).

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/tests/testenv"
)

// vmParts are the kernel, module directory and qemu the tests boot.
type vmParts = testenv.VM

// requireVM finds qemu and a kernel with its modules (testenv.RequireVM).
func requireVM(t *testing.T) vmParts { return testenv.RequireVM(t) }

// nixociBuild is a static nixoci (host tool and the VM's init), built once.
// NIXOCI_TEST_NIXOCI names a prebuilt static one to test instead.
var nixociBuild = &testenv.OnceBuild{Env: "NIXOCI_TEST_NIXOCI", Flags: []string{"-ldflags", "-s -w"}}

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) { os.Exit(nixociBuild.RunTests(m)) }

// nixociBinary returns a static nixoci built from this tree (once).
func nixociBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv(nixociBuild.Env) == "" {
		// The binary is the VM's init only if main dispatches to the guest.
		if src, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "cmd", "nixoci", "main.go")); err != nil || !bytes.Contains(src, []byte("guest.Init()")) {
			t.Fatalf("cmd/nixoci/main.go does not call guest.Init() (%v): add `if guest.Init() { return }` as the first statement of main, or the VM's init cannot run", err)
		}
	}
	return nixociBuild.Path(t)
}

// run runs a command for at most timeout.
func run(timeout time.Duration, name string, args ...string) testenv.Result {
	return testenv.Cmd{Name: name, Args: args, Timeout: timeout}.Run(context.Background())
}

// must runs a command for at most timeout, fails the test when it fails and
// returns its standard output.
func must(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	return testenv.Cmd{Name: name, Args: args, Timeout: timeout}.Must(t, context.Background()).Stdout
}

// baseFiles are the base layer's files besides busybox; the test script
// deletes etc/oldfile and replaces olddir.
var baseFiles = map[string]string{
	"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\n",
	"etc/group":   "root:x:0:\n",
	"etc/oldfile": "the script deletes me\n",
	"olddir/a":    "a\n",
	"olddir/b":    "b\n",
}

// baseApplets are linked to busybox in bin/.
var baseApplets = []string{"sh", "cat", "chmod", "chown", "dd", "echo", "grep", "head", "id", "ls", "mkdir", "rm", "sleep", "stat", "test", "yes"}

// baseCreated is the base image's time, which the layer's entries get.
var baseCreated = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// writeBaseImage writes a busybox base layer tar and an image descriptor
// for it into dir and returns the descriptor's path.
func writeBaseImage(t *testing.T, dir string) string {
	t.Helper()
	busybox := testenv.ReadFile(t, testenv.StaticBusybox(t))
	tarFile := filepath.Join(dir, "base.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1, 0)
	add := func(h *tar.Header, body []byte) {
		h.ModTime = mt
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "etc/", "olddir/", "tmp/", "root/"} {
		mode := int64(0o755)
		switch d {
		case "tmp/":
			mode = 0o1777
		case "root/":
			mode = 0o700
		}
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, busybox)
	for _, a := range baseApplets {
		add(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	names := make([]string, 0, len(baseFiles))
	for n := range baseFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644}, []byte(baseFiles[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarFile, buf.Bytes(), 0o444); err != nil {
		t.Fatal(err)
	}
	l, err := layer.DescribeTar(context.Background(), tarFile, descriptor.Gzip, &descriptor.History{CreatedBy: "vm test base"})
	if err != nil {
		t.Fatal(err)
	}
	created := baseCreated
	img := &descriptor.Image{
		Name:         "nixoci-test/run-as-root-base",
		Tag:          "latest",
		Architecture: "amd64",
		OS:           "linux",
		Created:      &created,
		Layers:       []descriptor.Layer{l.(layer.Describer).Descriptor()},
	}
	img.Config.Env = []string{"PATH=/bin"}
	img.Config.Cmd = []string{"/bin/sh"}
	file := filepath.Join(dir, "base.json")
	if err := descriptor.Write(file, img); err != nil {
		t.Fatal(err)
	}
	return file
}

// readTar returns the names of a layer tar's entries, in order, and the
// entries by name.
func readTar(t *testing.T, file string) ([]string, map[string]testenv.TarEntry) {
	t.Helper()
	var names []string
	entries := map[string]testenv.TarEntry{}
	for _, e := range testenv.ReadTar(t, file) {
		names = append(names, e.Header.Name)
		entries[e.Header.Name] = e
	}
	return names, entries
}

// noOutput checks that a failed run left neither output file.
func noOutput(t *testing.T, out string) {
	t.Helper()
	for _, f := range []string{"layer.tar", "layers.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("a failed run left %s behind", filepath.Join(out, f))
		}
	}
}

// kvmHost is what this host's KVM can do, found without nixoci.
type kvmHost struct {
	// openErr is why /dev/kvm does not open read-write (nil when it does).
	openErr error
	// boots tells whether a kernel starts under -accel kvm -cpu host.
	boots bool
	// seen is the probe's last console lines, for messages.
	seen string
}

// String describes the host for logs and skip messages.
func (k kvmHost) String() string {
	switch {
	case k.openErr != nil:
		return fmt.Sprintf("no usable /dev/kvm (%v)", k.openErr)
	case k.boots:
		return "KVM boots a kernel"
	}
	return fmt.Sprintf("/dev/kvm opens but KVM cannot boot a kernel (the probe's console ended with: %s)", k.seen)
}

// wantAccel is the accelerator `--accel auto` must end up with here.
func (k kvmHost) wantAccel() string {
	if k.openErr == nil && k.boots {
		return "kvm"
	}
	return "tcg"
}

// kvmProbeTime bounds the probe: a kernel prints "Linux version" within a
// second of starting under a working KVM; a broken one never does.
const kvmProbeTime = 10 * time.Second

var kvmProbe struct {
	once sync.Once
	host kvmHost
}

// probeKVM finds out, once, whether KVM works here: it boots the kernel
// with qemu alone (no initramfs, so it panics and qemu exits) and looks for
// the kernel's first line.
func probeKVM(t *testing.T, parts vmParts) kvmHost {
	t.Helper()
	kvmProbe.once.Do(func() {
		h := &kvmProbe.host
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			h.openErr = err
			return
		}
		f.Close()
		start := time.Now()
		r := run(kvmProbeTime, parts.Qemu, "-nographic", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nic", "none", "-nodefaults",
			"-m", "256M", "-accel", "kvm", "-cpu", "host", "-kernel", parts.Kernel, "-append", "console=ttyS0 panic=-1")
		out := ansiEscape.ReplaceAllString(r.Stdout+r.Stderr, "")
		h.boots = strings.Contains(out, "Linux version")
		h.seen = strings.ReplaceAll(testenv.Tail(strings.TrimSpace(out), 3), "\n", " | ")
		t.Logf("KVM probe (%v): %s", time.Since(start).Round(time.Millisecond), h)
	})
	return kvmProbe.host
}

// ansiEscape matches the terminal escapes the firmware prints.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Za-z0-9]|[A-Za-z])|\r`)

// vmSummary is run-as-root's (and the nix-build log's) line about the VM.
var vmSummary = regexp.MustCompile(`VM (\S+) under (kvm|tcg)(, after (\S+) trying KVM)?`)

// vmLine returns the VM summary line's accelerator, wall time and the KVM
// attempt's time ("" when there was none); it fails the test without one.
func vmLine(t *testing.T, stderr string) (accel, wall, kvmAttempt string) {
	t.Helper()
	m := vmSummary.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no \"VM … under kvm|tcg\" summary line in:\n%s", stderr)
	}
	if n := len(vmSummary.FindAllString(stderr, -1)); n != 1 {
		t.Errorf("%d VM summary lines, want one:\n%s", n, stderr)
	}
	return m[2], m[1], m[4]
}

// checkAccel checks that an `--accel auto` run ended under the accelerator
// this host calls for, with the one warning it calls for.
func checkAccel(t *testing.T, host kvmHost, stderr string) {
	t.Helper()
	accel, _, kvmAttempt := vmLine(t, stderr)
	if want := host.wantAccel(); accel != want {
		t.Errorf("the VM ran under %s on a host where %s; want %s", accel, host, want)
	}
	fellBack := strings.Count(stderr, "did not come up under KVM")
	notUsable := strings.Count(stderr, "KVM is not usable")
	switch {
	case host.openErr != nil:
		if notUsable != 1 || fellBack != 0 || kvmAttempt != "" {
			t.Errorf("without /dev/kvm: want one \"KVM is not usable\" warning and no KVM attempt:\n%s", stderr)
		}
	case host.boots:
		if notUsable != 0 || fellBack != 0 || kvmAttempt != "" {
			t.Errorf("with a working KVM: want no KVM warning:\n%s", stderr)
		}
	default:
		if fellBack != 1 || notUsable != 0 || kvmAttempt == "" {
			t.Errorf("with a KVM that cannot boot: want one fallback warning and the KVM attempt's time:\n%s", stderr)
		}
	}
}
