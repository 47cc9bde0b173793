package vm

// What the machine (and .ci/run) must provide:
//   - qemu-system-x86 (qemu-system-x86_64) and linux-image-cloud-amd64 (a
//     kernel in /boot with its modules in /lib/modules/VERSION); or set
//     NIXOCI_TEST_VM_KERNEL and NIXOCI_TEST_VM_MODULES. No KVM is needed:
//     without /dev/kvm the VM runs under TCG.
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
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

const buildTags = "containers_image_openpgp exclude_graphdriver_btrfs"

func inCI() bool { return os.Getenv("CI") == "true" }

// missing skips the test outside CI and fails it under CI=true.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("CI=true but %s", msg)
	}
	t.Skipf("skipping: %s (.ci/run sets it up)", msg)
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// vmParts are the kernel, module directory and qemu the tests boot.
type vmParts struct {
	kernel, modules, qemu string
}

func (p vmParts) flags() []string {
	return []string{"--kernel", p.kernel, "--modules", p.modules, "--qemu", p.qemu}
}

// requireVM finds qemu and a kernel with its modules.
func requireVM(t *testing.T) vmParts {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the VM tests boot an x86_64 kernel; this is %s", runtime.GOARCH)
	}
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing(t, "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	p := vmParts{qemu: q, kernel: os.Getenv("NIXOCI_TEST_VM_KERNEL"), modules: os.Getenv("NIXOCI_TEST_VM_MODULES")}
	if p.kernel != "" && p.modules != "" {
		return p
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	for _, k := range kernels {
		ver := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		mods := filepath.Join("/lib/modules", ver)
		if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err == nil {
			if f, err := os.Open(k); err == nil {
				f.Close()
				p.kernel, p.modules = k, mods
				return p
			}
		}
	}
	missing(t, "no readable /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep (Debian package linux-image-cloud-amd64)")
	return p
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// nixociBinary returns a static nixoci built from this tree (once).
func nixociBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NIXOCI_TEST_NIXOCI"); p != "" {
		return p
	}
	if _, err := exec.LookPath("go"); err != nil {
		missing(t, "go is not installed")
	}
	// The binary is the VM's init only if main dispatches to the guest.
	if src, err := os.ReadFile(filepath.Join(moduleRoot(), "cmd", "nixoci", "main.go")); err != nil || !bytes.Contains(src, []byte("guest.Init()")) {
		t.Fatalf("cmd/nixoci/main.go does not call guest.Init() (%v): add `if guest.Init() { return }` as the first statement of main, or the VM's init cannot run", err)
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "nixoci-vm-test-bin-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", buildTags, "-ldflags", "-s -w", "-o", filepath.Join(buildDir, "bin", "nixoci"), "./cmd/nixoci")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building a static nixoci: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "bin", "nixoci")
}

// run runs a command with a time limit; it returns stdout, stderr and the error.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, string, error) {
	t.Helper()
	return runEnv(t, timeout, nil, name, args...)
}

// runEnv is run with extra environment variables.
func runEnv(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

func must(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := run(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
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
	bb, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox is not installed (Debian package busybox-static)")
	}
	busybox, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
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
		Layers:       []descriptor.Layer{l},
	}
	img.Config.Env = []string{"PATH=/bin"}
	img.Config.Cmd = []string{"/bin/sh"}
	file := filepath.Join(dir, "base.json")
	if err := descriptor.Write(file, img); err != nil {
		t.Fatal(err)
	}
	return file
}

// tarEntry is one entry of a layer tar, read back.
type tarEntry struct {
	hdr  *tar.Header
	body string
}

func readTar(t *testing.T, file string) ([]string, map[string]tarEntry) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	entries := map[string]tarEntry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		entries[h.Name] = tarEntry{h, string(body)}
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
