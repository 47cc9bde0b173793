package vm

// The accelerator tests boot the real kernel under TCG with this test
// binary as the VM's init (TestMain hands over to the guest), and use
// stand-in qemu programs, small shell scripts, for the KVM leg: one aborts
// as a broken KVM does, one hangs as one does, one never boots anything.
// They reach the KVM path on any host: Options.kvmDevice points at a file
// that opens, so the real /dev/kvm plays no part.
//
// They need qemu-system-x86_64, a kernel in /boot with its modules in
// /lib/modules/VERSION (or NIXOCI_TEST_VM_KERNEL and NIXOCI_TEST_VM_MODULES)
// and a static busybox. Outside CI a missing one skips the tests; under
// CI=true it fails them.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/guest"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/vm/wire"
	"github.com/nixoci/nixoci/tests/testenv"
)

// TestMain makes this test binary the guest init when the VM boots it.
func TestMain(m *testing.M) {
	if guest.Init() {
		return
	}
	os.Exit(m.Run())
}

// requireRealVM finds the real qemu and kernel the TCG leg boots.
func requireRealVM(t *testing.T) testenv.VM { return testenv.RequireVM(t) }

// writeBusyboxImage writes an image descriptor of one layer holding a
// static busybox as /bin/sh, and returns its path.
func writeBusyboxImage(t *testing.T, dir string) string {
	t.Helper()
	bb := testenv.ReadFile(t, testenv.StaticBusybox(t))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
	} {
		h.ModTime = time.Unix(1, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bb); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarFile := filepath.Join(dir, "busybox.tar")
	testenv.WriteFile(t, tarFile, buf.String(), 0o444)
	l, err := layer.DescribeTar(context.Background(), tarFile, descriptor.Gzip, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := &descriptor.Image{Name: "nixoci-test/vm-accel", Tag: "latest", Architecture: "amd64", OS: "linux", Layers: []descriptor.Layer{l.(layer.Describer).Descriptor()}}
	file := filepath.Join(dir, "image.json")
	if err := descriptor.Write(file, img); err != nil {
		t.Fatal(err)
	}
	return file
}

// Stand-in qemu programs. %[1]s is the real qemu, %[2]s a file each call
// appends its arguments to.
const (
	// standInMSR aborts under -accel kvm as qemu 7.2 does on a KVM that
	// rejects an MSR, and runs the real qemu otherwise.
	standInMSR = `#!/bin/sh
echo "$*" >> %[2]s
case " $* " in *" -accel kvm "*)
	echo "error: failed to set MSR 0x10a to 0x69" >&2
	echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3040: kvm_buf_set_msrs: Assertion 'ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
	kill -ABRT $$
esac
exec %[1]s "$@"
`
	// standInHang prints what a guest stuck in boot prints under -accel
	// kvm and then hangs (in a child process, as a wrapper would, so that
	// killing only the script would not end it); it runs the real qemu
	// otherwise.
	standInHang = `#!/bin/sh
echo "$*" >> %[2]s
case " $* " in *" -accel kvm "*)
	echo "Booting from ROM..."
	echo "Probing EDD (edd=off to disable)... ok"
	sleep 3600
	exit 0
esac
exec %[1]s "$@"
`
	// standInNoBoot never boots: it fails at once under any accelerator.
	standInNoBoot = `#!/bin/sh
echo "$*" >> %[2]s
echo "qemu-system-x86_64: stand-in: this qemu boots nothing" >&2
exit 1
`
	// standInHangAll hangs under any accelerator.
	standInHangAll = `#!/bin/sh
echo "$*" >> %[2]s
echo "Probing EDD (edd=off to disable)... ok"
exec sleep 3600
`
)

// accelRun is one Run with a stand-in qemu.
type accelRun struct {
	opts     Options
	calls    string // the file the stand-in logs its calls to
	warnings *bytes.Buffer
}

// newAccelRun writes the stand-in (a format of the consts above) and the
// options of a run of a small script over a busybox image, with a KVM
// device that opens.
func newAccelRun(t *testing.T, v testenv.VM, image, standIn, accel string) *accelRun {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	qemu := filepath.Join(dir, "qemu")
	testenv.WriteFile(t, qemu, fmt.Sprintf(standIn, v.Qemu, calls), 0o755)
	script := filepath.Join(dir, "script.sh")
	testenv.WriteFile(t, script, "echo hello from the VM > /etc/motd\n", 0o644)
	kvm := filepath.Join(dir, "kvm")
	testenv.WriteFile(t, kvm, "", 0o644)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	warnings := &bytes.Buffer{}
	log := logrus.New()
	log.SetOutput(warnings)
	log.SetLevel(logrus.WarnLevel)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableQuote: true})
	return &accelRun{
		opts: Options{
			Image: image, Script: script, Kernel: v.Kernel, Modules: v.Modules, Qemu: qemu, Init: exe,
			DiskSizeMiB: 64, Timeout: 5 * time.Minute, Accel: accel, KVMBootDeadline: 3 * time.Second,
			Output: filepath.Join(dir, "out"), TempDir: dir, Log: log, kvmDevice: kvm,
		},
		calls:    calls,
		warnings: warnings,
	}
}

// accels returns the accelerator of each qemu call, in order.
func (r *accelRun) accels(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(r.calls)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		_, after, ok := strings.Cut(line, "-accel ")
		if !ok {
			t.Fatalf("qemu called without -accel: %s", line)
		}
		out = append(out, strings.Fields(after)[0])
	}
	return out
}

// warningLines returns the warnings logged.
func (r *accelRun) warningLines() []string {
	s := strings.TrimSpace(r.warnings.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// checkLayer checks that the run's layer holds the script's change.
func checkLayer(t *testing.T, res *Result, out string) {
	t.Helper()
	if res == nil || len(res.Layers.Layers) != 1 {
		t.Fatalf("Run() result %+v, want one layer", res)
	}
	for _, e := range testenv.ReadTar(t, filepath.Join(out, LayerFile)) {
		if e.Header.Name == "etc/motd" {
			if e.Body != "hello from the VM\n" {
				t.Errorf("etc/motd = %q, want the script's line", e.Body)
			}
			return
		}
	}
	t.Errorf("the layer has no etc/motd, which the script wrote")
}

// checkNoLayer checks that a failed run left no layer behind.
func checkNoLayer(t *testing.T, out string) {
	t.Helper()
	for _, f := range []string{LayerFile, LayersFile} {
		if _, err := os.Stat(filepath.Join(out, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed run left %s behind (%v)", f, err)
		}
	}
}

// TestAccelFallback: auto falls back from a KVM whose qemu aborts or whose
// guest hangs in boot, with one warning saying why, and finishes under TCG;
// kvm fails instead, naming the reason.
func TestAccelFallback(t *testing.T) {
	v := requireRealVM(t)
	image := writeBusyboxImage(t, t.TempDir())

	t.Run("qemu aborts under KVM/auto", func(t *testing.T) {
		r := newAccelRun(t, v, image, standInMSR, AccelAuto)
		start := time.Now()
		res, err := Run(context.Background(), r.opts)
		if err != nil {
			t.Fatalf("Run() = %v, want a TCG run after the KVM abort", err)
		}
		t.Logf("%s; guest up after %v; Run took %v; warned: %s", res.Summary(), res.BootTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), r.warnings)
		fmt.Printf("stand-in aborting under KVM, auto: %s\n", res.Summary())
		if res.Accel != AccelTCG || res.KVMFallback == "" {
			t.Errorf("Run() accel %q, fallback %q, want tcg after a fallback", res.Accel, res.KVMFallback)
		}
		if got, want := r.accels(t), []string{"kvm", "tcg"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("qemu calls under %v, want %v", got, want)
		}
		w := r.warningLines()
		if len(w) != 1 || !strings.Contains(w[0], "failed to set MSR 0x10a to 0x69") || !strings.Contains(w[0], "TCG") {
			t.Errorf("warnings = %q, want one naming the MSR message and TCG", w)
		}
		if !strings.Contains(res.Summary(), "under tcg") || !strings.Contains(res.Summary(), "trying KVM") {
			t.Errorf("Summary() = %q, want the accelerator and the KVM attempt", res.Summary())
		}
		checkLayer(t, res, r.opts.Output)
	})

	t.Run("qemu aborts under KVM/kvm", func(t *testing.T) {
		r := newAccelRun(t, v, image, standInMSR, AccelKVM)
		_, err := Run(context.Background(), r.opts)
		if !errors.Is(err, ErrKVM) || !strings.Contains(err.Error(), "failed to set MSR 0x10a to 0x69") || !strings.Contains(err.Error(), "kvm_buf_set_msrs") {
			t.Fatalf("Run() = %v, want ErrKVM naming qemu's message", err)
		}
		t.Logf("Run() = %v", err)
		if got := r.accels(t); strings.Join(got, " ") != "kvm" {
			t.Errorf("qemu calls under %v, want one under kvm", got)
		}
		checkNoLayer(t, r.opts.Output)
	})

	t.Run("guest hangs under KVM/auto", func(t *testing.T) {
		r := newAccelRun(t, v, image, standInHang, AccelAuto)
		res, err := Run(context.Background(), r.opts)
		if err != nil {
			t.Fatalf("Run() = %v, want a TCG run after the KVM boot deadline", err)
		}
		t.Logf("guest up after %v under TCG; warned: %s", res.BootTime.Round(time.Millisecond), r.warnings)
		fmt.Printf("stand-in hanging under KVM, auto, deadline %v: %s\n", r.opts.KVMBootDeadline, res.Summary())
		if res.Accel != AccelTCG {
			t.Errorf("Run() accel %q, want tcg", res.Accel)
		}
		// The KVM attempt lasts the deadline and at most a little more.
		if d := r.opts.KVMBootDeadline; res.KVMTime < d || res.KVMTime > d+3*time.Second {
			t.Errorf("the KVM attempt took %v, want the boot deadline %v plus at most 3s", res.KVMTime, d)
		}
		w := r.warningLines()
		if len(w) != 1 || !strings.Contains(w[0], "3s") || !strings.Contains(w[0], "Probing EDD") {
			t.Errorf("warnings = %q, want one naming the deadline and the console's last line", w)
		}
		checkLayer(t, res, r.opts.Output)
	})

	t.Run("guest hangs under KVM/kvm", func(t *testing.T) {
		r := newAccelRun(t, v, image, standInHang, AccelKVM)
		start := time.Now()
		_, err := Run(context.Background(), r.opts)
		took := time.Since(start)
		if !errors.Is(err, ErrKVM) || !strings.Contains(err.Error(), "did not report that it was up within") || !strings.Contains(err.Error(), "Probing EDD") {
			t.Fatalf("Run() = %v, want ErrKVM naming the missing boot report", err)
		}
		t.Logf("Run() = %v (after %v)", err, took.Round(time.Millisecond))
		if took > r.opts.KVMBootDeadline+30*time.Second {
			t.Errorf("Run() took %v with a boot deadline of %v", took, r.opts.KVMBootDeadline)
		}
		if got := r.accels(t); strings.Join(got, " ") != "kvm" {
			t.Errorf("qemu calls under %v, want one under kvm", got)
		}
		checkNoLayer(t, r.opts.Output)
	})
}

// TestAccelNoBoot: a qemu that never boots fails clearly under every
// choice, trying only what the choice allows, and leaves no layer.
func TestAccelNoBoot(t *testing.T) {
	v := requireRealVM(t)
	image := writeBusyboxImage(t, t.TempDir())
	tests := []struct {
		name, standIn, accel string
		noKVM                bool // the KVM device does not open
		timeout              time.Duration
		calls                string
		kind                 error
		want                 []string
		warnings             int
	}{
		{name: "exits/auto", standIn: standInNoBoot, accel: AccelAuto, calls: "kvm tcg", kind: ErrVMFailed,
			want: []string{"after falling back from KVM", "guest init never started", "boots nothing"}, warnings: 1},
		{name: "exits/kvm", standIn: standInNoBoot, accel: AccelKVM, calls: "kvm", kind: ErrKVM,
			want: []string{"exit status 1", "boots nothing"}},
		{name: "exits/tcg", standIn: standInNoBoot, accel: AccelTCG, calls: "tcg", kind: ErrVMFailed,
			want: []string{"guest init never started", "boots nothing"}},
		{name: "exits/auto without KVM", standIn: standInNoBoot, accel: AccelAuto, noKVM: true, calls: "tcg", kind: ErrVMFailed,
			want: []string{"guest init never started"}, warnings: 1},
		{name: "kvm without KVM", standIn: standInNoBoot, accel: AccelKVM, noKVM: true, calls: "", kind: ErrKVM,
			want: []string{"needs KVM", "requireKVM"}},
		{name: "hangs/auto", standIn: standInHangAll, accel: AccelAuto, timeout: 10 * time.Second, calls: "kvm tcg", kind: ErrTimeout,
			want: []string{"runAsRootTimeout", "after falling back from KVM", "Probing EDD"}, warnings: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newAccelRun(t, v, image, tc.standIn, tc.accel)
			if tc.noKVM {
				r.opts.kvmDevice = filepath.Join(t.TempDir(), "no-kvm")
			}
			if tc.timeout != 0 {
				r.opts.Timeout = tc.timeout
			}
			start := time.Now()
			res, err := Run(context.Background(), r.opts)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("Run() = %+v, want an error", res)
			}
			t.Logf("Run() = %v\nwarned: %s", err, r.warnings)
			if !errors.Is(err, tc.kind) {
				t.Errorf("Run() = %v, want %v", err, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Run() error does not mention %q:\n%v", w, err)
				}
			}
			if got := strings.Join(r.accels(t), " "); got != tc.calls {
				t.Errorf("qemu calls under %q, want %q", got, tc.calls)
			}
			if w := r.warningLines(); len(w) != tc.warnings {
				t.Errorf("warnings = %q, want %d", w, tc.warnings)
			}
			if limit := r.opts.Timeout + 10*time.Second; took > limit {
				t.Errorf("Run() took %v, want at most %v", took, limit)
			}
			checkNoLayer(t, r.opts.Output)
		})
	}
}

// TestMachineBootReport runs machine.run with stand-ins only (no kernel):
// it sees the boot marker, and at the boot deadline it kills the stand-in
// and its children at once.
func TestMachineBootReport(t *testing.T) {
	testenv.RequireTools(t, "sh", "sleep")
	dir := t.TempDir()
	up := filepath.Join(dir, "up")
	testenv.WriteFile(t, up, "#!/bin/sh\necho 'early boot'\necho '"+wire.BootMarker+"'\necho 'power off'\n", 0o755)
	hang := filepath.Join(dir, "hang")
	testenv.WriteFile(t, hang, "#!/bin/sh\necho 'Probing EDD (edd=off to disable)... ok'\nsleep 3600\nexit 0\n", 0o755)
	m := func(qemu string) *machine {
		return &machine{qemu: qemu, accel: AccelKVM, timeout: time.Minute, bootDeadline: 2 * time.Second, log: discardLogger()}
	}

	rep, err := m(up).run(context.Background())
	if err != nil || !rep.up {
		t.Errorf("run(marker printer) = %+v, %v; want up and no error", rep, err)
	}

	start := time.Now()
	rep, err = m(hang).run(context.Background())
	took := time.Since(start)
	if !errors.Is(err, errNoBootReport) || rep.up {
		t.Errorf("run(hang) = %+v, %v; want errNoBootReport", rep, err)
	}
	// The sleep child holds the console pipe: only a group kill ends it
	// before exec's WaitDelay (5s).
	if took > 4*time.Second {
		t.Errorf("run(hang) took %v with a 2s boot deadline, want the hang killed at once", took)
	}
	if len(rep.console) == 0 || !strings.Contains(rep.console[len(rep.console)-1], "Probing EDD") {
		t.Errorf("run(hang) console = %q, want the stand-in's line", rep.console)
	}
}
