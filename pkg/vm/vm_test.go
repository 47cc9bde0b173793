package vm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/nixoci/nixoci/pkg/vm/wire"
	"github.com/nixoci/nixoci/tests/testenv"
)

// cpioEntry is one entry of a newc archive, parsed independently of cpio.go.
type cpioEntry struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

func parseNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field at %d: %v", off, err)
		}
		return uint32(v)
	}
	for {
		if off%4 != 0 {
			t.Fatalf("header at offset %d is not 4-aligned", off)
		}
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic %q at %d", b[off:off+6], off)
		}
		mode, size, namesize := field(1), field(6), field(11)
		rmaj, rmin := field(9), field(10)
		name := string(b[off+110 : off+110+int(namesize)-1])
		p := off + 110 + int(namesize)
		p += (4 - p%4) % 4
		data := string(b[p : p+int(size)])
		p += int(size)
		p += (4 - p%4) % 4
		off = p
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{name, mode, data, rmaj, rmin})
	}
}

func TestCpio(t *testing.T) {
	var buf bytes.Buffer
	c := newCpio(&buf)
	c.Dir("dev")
	c.CharDev("dev/console", 0o600, 5, 1)
	c.File("a/b/c.txt", 0o644, strings.NewReader("hello"), 5)
	c.File("/a/b/d", 0o755, strings.NewReader("1234"), 4)
	c.Symlink("a/link", "b/c.txt")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := parseNewc(t, buf.Bytes())
	want := []cpioEntry{
		{name: "dev", mode: cpioDir | 0o755},
		{name: "dev/console", mode: cpioChr | 0o600, major: 5, minor: 1},
		{name: "a", mode: cpioDir | 0o755},
		{name: "a/b", mode: cpioDir | 0o755},
		{name: "a/b/c.txt", mode: cpioReg | 0o644, data: "hello"},
		{name: "a/b/d", mode: cpioReg | 0o755, data: "1234"},
		{name: "a/link", mode: cpioLink | 0o777, data: "b/c.txt"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(cpioEntry{})); diff != "" {
		t.Errorf("cpio entries (-want +got):\n%s", diff)
	}
}

// fakeELF is enough of a module for openModule's check.
var fakeELF = []byte("\x7fELF fake kernel module")

func compressWith(t *testing.T, ext string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	var err error
	switch ext {
	case ".xz":
		w, err = xz.NewWriter(&buf)
	case ".gz":
		w = gzip.NewWriter(&buf)
	case ".zst":
		w, err = zstd.NewWriter(&buf)
	default:
		return data
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"kernel/drivers/virtio_pci.ko.xz":      ".xz",
		"kernel/drivers/virtio.ko.gz":          ".gz",
		"kernel/drivers/virtio_ring.ko":        "",
		"kernel/drivers/virtio-blk.ko.zst":     ".zst",
		"kernel/fs/overlay.ko":                 "",
		"kernel/drivers/virtio_pci_legacy.ko":  "",
		"kernel/drivers/virtio_pci_modern.ko":  "",
		"kernel/drivers/needs_missing.ko":      "",
		"kernel/drivers/listed_but_missing.ko": "skip",
	}
	for f, ext := range files {
		if ext == "skip" {
			continue
		}
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, compressWith(t, ext, fakeELF), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep := `kernel/drivers/virtio_pci.ko.xz: kernel/drivers/virtio_pci_legacy.ko kernel/drivers/virtio_pci_modern.ko kernel/drivers/virtio.ko.gz kernel/drivers/virtio_ring.ko
kernel/drivers/virtio.ko.gz: kernel/drivers/virtio_ring.ko
kernel/drivers/virtio_ring.ko:
kernel/drivers/virtio_pci_legacy.ko:
kernel/drivers/virtio_pci_modern.ko:
kernel/drivers/virtio-blk.ko.zst: kernel/drivers/virtio.ko.gz kernel/drivers/virtio_ring.ko
kernel/drivers/needs_missing.ko: kernel/drivers/nowhere.ko
kernel/drivers/listed_but_missing.ko:
`
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/overlay.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names   []string
		want    []string
		wantErr []string
	}{
		{names: GuestModules, want: []string{"virtio_pci_legacy", "virtio_pci_modern", "virtio_ring", "virtio", "virtio_pci", "virtio_blk"}},
		{names: []string{"virtio-blk", "virtio_blk"}, want: []string{"virtio_ring", "virtio", "virtio_blk"}},
		{names: []string{"overlay"}, want: nil},
		{names: []string{"nine_p"}, wantErr: []string{"kernel module nine_p", "modules.dep", "vmModules"}},
		{names: []string{"needs_missing"}, wantErr: []string{"kernel module nowhere (needed by needs_missing)"}},
		{names: []string{"listed_but_missing"}, wantErr: []string{"listed_but_missing", "file is missing"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.names, ","), func(t *testing.T) {
			mods, err := ResolveModules(dir, tc.names)
			if tc.wantErr != nil {
				if !errors.Is(err, ErrModuleNotFound) {
					t.Fatalf("ResolveModules() = %v, want ErrModuleNotFound", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("ResolveModules() error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range mods {
				got = append(got, m.Name)
				data, err := openModule(m.File)
				if err != nil {
					t.Errorf("openModule(%s) = %v", m.File, err)
				} else if !bytes.Equal(data, fakeELF) {
					t.Errorf("openModule(%s) = %q, want %q", m.File, data, fakeELF)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ResolveModules() order (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ResolveModules(filepath.Join(dir, "nope"), GuestModules); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("ResolveModules(missing dir) = %v, want an error naming modules.dep", err)
	}
}

func TestSwapHeader(t *testing.T) {
	for _, size := range []int64{64 << 20, 1 << 30} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			h := swapHeader(size)
			if len(h) != 4096 || string(h[4086:]) != "SWAPSPACE2" {
				t.Fatalf("swapHeader(%d): %d bytes ending %q", size, len(h), h[4086:])
			}
			if v, last := binary.LittleEndian.Uint32(h[1024:]), binary.LittleEndian.Uint32(h[1028:]); v != 1 || int64(last) != size/4096-1 {
				t.Errorf("swapHeader(%d): version %d last_page %d, want 1 %d", size, v, last, size/4096-1)
			}
		})
	}
}

func TestClosurePaths(t *testing.T) {
	dir := t.TempDir()
	g := filepath.Join(dir, "graph.json")
	if err := os.WriteFile(g, []byte(`[{"path":"/nix/store/b-x","references":[]},{"path":"/nix/store/a-y","narSize":3}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := closurePaths([]string{g}, []string{"/nix/store/c-z", "/nix/store/a-y"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/nix/store/a-y", "/nix/store/b-x", "/nix/store/c-z"}, got); diff != "" {
		t.Errorf("closurePaths() (-want +got):\n%s", diff)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"path": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := closurePaths([]string{bad}, nil); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("closurePaths(bad) = %v, want an error naming bad.json", err)
	}
}

func TestInitramfs(t *testing.T) {
	dir := t.TempDir()
	init := filepath.Join(dir, "nixoci")
	if err := os.WriteFile(init, fakeELF, 0o755); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "virtio.ko.gz")
	if err := os.WriteFile(mod, compressWith(t, ".gz", fakeELF), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	// A file that is not a real ELF fails sharedLibraries.
	if err := writeInitramfs(&buf, init, nil); err == nil {
		t.Errorf("writeInitramfs(not an ELF binary) succeeded")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := writeInitramfs(&buf, exe, []Module{{Name: "virtio", File: mod}}); err != nil {
		t.Fatal(err)
	}
	entries := map[string]cpioEntry{}
	for _, e := range parseNewc(t, buf.Bytes()) {
		entries[e.name] = e
	}
	exeData, _ := os.ReadFile(exe)
	if e := entries["init"]; e.data != string(exeData) || e.mode != cpioReg|0o755 {
		t.Errorf("init: %d bytes mode %o, want this test binary (%d bytes) 0755", len(e.data), e.mode, len(exeData))
	}
	if e := entries["dev/console"]; e.mode != cpioChr|0o600 || e.major != 5 || e.minor != 1 {
		t.Errorf("dev/console = %+v", e)
	}
	modDir := strings.TrimPrefix(wire.ModulesDir, "/")
	if e := entries[modDir+"/virtio.ko"]; e.data != string(fakeELF) {
		t.Errorf("module virtio.ko = %q, want it decompressed", e.data)
	}
	if e := entries[modDir+"/"+wire.ModulesOrder]; e.data != "virtio.ko\n" {
		t.Errorf("module order = %q", e.data)
	}
	libs, err := sharedLibraries(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if _, ok := entries[strings.TrimPrefix(l, "/")]; !ok {
			t.Errorf("library %s of the init is not in the initramfs", l)
		}
	}
}

func TestSharedLibraries(t *testing.T) {
	for _, tc := range []struct {
		bin     string
		dynamic bool
	}{{"/bin/busybox", false}, {"/bin/ls", true}} {
		t.Run(tc.bin, func(t *testing.T) {
			if _, err := os.Stat(tc.bin); err != nil {
				testenv.Missing(t, "%s is missing (%v): Debian's busybox-static and coreutils install it", tc.bin, err)
			}
			libs, err := sharedLibraries(tc.bin)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.dynamic {
				if len(libs) != 0 {
					t.Errorf("sharedLibraries(%s) = %v, want none for a static binary", tc.bin, libs)
				}
				return
			}
			joined := strings.Join(libs, " ")
			if !strings.Contains(joined, "ld-linux") || !strings.Contains(joined, "libc.so.6") {
				t.Errorf("sharedLibraries(%s) = %v, want the interpreter and libc", tc.bin, libs)
			}
		})
	}
}

func TestMachineArgs(t *testing.T) {
	for _, accel := range []string{AccelKVM, AccelTCG} {
		t.Run(accel, func(t *testing.T) {
			m := &machine{qemu: "q", kernel: "k", initrd: "i", cmdline: "c", memoryMiB: 300, accel: accel,
				disks: []disk{{file: "/a,b", serial: wire.SerialInput, readOnly: true}, {file: "o", serial: wire.SerialOutput}}}
			args := strings.Join(m.args(), " ")
			for _, w := range []string{"-accel " + accel, "-nic none", "-m 300M", "-no-reboot", "file=/a,,b,format=raw", "readonly=on", "serial=" + wire.SerialInput, "serial=" + wire.SerialOutput} {
				if !strings.Contains(args, w) {
					t.Errorf("qemu args %q lack %q", args, w)
				}
			}
			if got := strings.Contains(args, "-cpu host"); got != (accel == AccelKVM) {
				t.Errorf("qemu args %q: -cpu host present = %v", args, got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Options{Image: "i", Script: "s", Output: "o", Kernel: "k", Modules: "m", Qemu: "q"}
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"ok", func(*Options) {}, ""},
		{"no image", func(o *Options) { o.Image = "" }, "--image"},
		{"no script", func(o *Options) { o.Script = "" }, "--script"},
		{"no kernel", func(o *Options) { o.Kernel = "" }, "vmKernel"},
		{"no modules", func(o *Options) { o.Modules = "" }, "vmModules"},
		{"no qemu", func(o *Options) { o.Qemu = "" }, "qemu"},
		{"small memory", func(o *Options) { o.MemoryMiB = 64 }, "buildVMMemorySize"},
		{"bad accel", func(o *Options) { o.Accel = "hvf" }, "runAsRootAccel, --accel"},
		{"negative KVM boot deadline", func(o *Options) { o.KVMBootDeadline = -time.Second }, "--kvm-boot-deadline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
