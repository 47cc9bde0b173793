package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/vm/wire"
)

// Defaults of Options.
const (
	DefaultDiskSizeMiB = 1024
	DefaultMemoryMiB   = 512
	DefaultTimeout     = 30 * time.Minute
	// DefaultKVMBootDeadline is how long the guest init has, under KVM, to
	// report that it is up (wire.BootMarker) before qemu is killed and, with
	// AccelAuto, the VM runs again under TCG. A KVM boot takes about a
	// second, so 5 s leaves room for a loaded host; a broken KVM never
	// gets there (the one seen hangs for good after "Probing EDD"). Falling
	// back costs at most this long, less than the TCG boot that follows
	// (4–12 s to the init on the 2-core CI machine).
	DefaultKVMBootDeadline = 5 * time.Second
	// DefaultPath is the script's PATH when the image's config sets none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// LayerFile and LayersFile are the names of the outputs in Options.Output.
	LayerFile  = "layer.tar"
	LayersFile = "layers.json"
	// CreatedBy is the history entry of the layer.
	CreatedBy = "runAsRoot"
)

// defaultCreated is the image time used when neither the options nor the
// image set one.
var defaultCreated = time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)

// Errors callers can branch on (wrapped by Run's errors).
var (
	// ErrScriptFailed: the script exited non-zero or was killed.
	ErrScriptFailed = errors.New("runAsRoot script failed")
	// ErrDiskFull: the scratch space (diskSize) ran out.
	ErrDiskFull = errors.New("runAsRoot scratch disk full")
	// ErrOutOfMemory: the VM ran out of memory (buildVMMemorySize).
	ErrOutOfMemory = errors.New("runAsRoot VM out of memory")
	// ErrVMFailed: the VM stopped without a result (did not boot, crashed).
	ErrVMFailed = errors.New("runAsRoot VM failed")
	// ErrMissing: a required file or program (kernel, qemu, init) is missing.
	ErrMissing = errors.New("runAsRoot requirement missing")
	// ErrKVM: AccelKVM was asked for, but /dev/kvm cannot be opened, or
	// the VM did not come up under KVM.
	ErrKVM = errors.New("runAsRoot VM cannot run under KVM")
)

// Error is a runAsRoot failure: Msg is the whole message (with the
// script's output or the console's last lines); Kind is one of the Err*
// values above, for errors.Is.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Options says what to run and where. Option names in error messages are
// given as the Nix argument and the CLI flag.
type Options struct {
	// Image is an image descriptor (file, or directory holding image.json)
	// whose layers, in order, make the script's root.
	Image string
	// Layers are layers documents whose layers go on top of Image's.
	Layers []string
	// Script is the file holding the script. A #! line is honoured;
	// otherwise it runs with Shell.
	Script string
	// Shell is the interpreter of a script without #!, a path in the
	// script's root (the image or StorePaths). Default: the image's /bin/sh.
	Shell string
	// StorePaths are shown under /nix/store to the script, as given
	// (pass whole closures). ClosureGraphs are Nix exportReferencesGraph
	// files whose paths are added too.
	StorePaths    []string
	ClosureGraphs []string
	// Env is added to the script's environment (NAME=value), after the
	// image's Env, HOME=/root and PATH.
	Env []string
	// Kernel is the kernel image to boot; Modules its module directory
	// (holding modules.dep); Qemu the qemu-system binary (a name is looked
	// up in PATH).
	Kernel, Modules, Qemu string
	// Init is the nixoci binary the guest runs as its init. Default: the
	// running executable. A static build (CGO_ENABLED=0) is best; a
	// dynamic one is shipped with its libraries.
	Init string
	// DiskSizeMiB is the scratch space for the script's changes;
	// MemoryMiB the VM's memory.
	DiskSizeMiB, MemoryMiB int64
	// Timeout bounds the VM's run.
	Timeout time.Duration
	// Created is the time of every entry in the layer. Default: the
	// image's created, else 1970-01-01T00:00:01Z.
	Created *time.Time
	// Compression of the layer's blob: "gzip" (default), "zstd", "none".
	Compression string
	// Accel is AccelAuto (default), AccelKVM or AccelTCG. AccelAuto tries
	// KVM when /dev/kvm opens, and runs the VM again under TCG, with one
	// warning saying why, when qemu exits or the guest init does not report
	// that it is up within KVMBootDeadline; without /dev/kvm it runs TCG at
	// once. AccelKVM never falls back: it fails with ErrKVM instead.
	// AccelTCG never tries KVM.
	Accel string
	// KVMBootDeadline is how long the guest init has to come up under KVM.
	// Default: DefaultKVMBootDeadline.
	KVMBootDeadline time.Duration
	// Output is the directory receiving LayerFile and LayersFile.
	Output string
	// TempDir holds the VM's disks while it runs. Default: os.TempDir().
	TempDir string
	// Log receives debug lines (the VM console) and warnings (the KVM
	// fallback, writes under /nix/store). Default: discarded.
	Log logrus.FieldLogger

	// kvmDevice is the device whose opening tells AccelAuto that KVM may
	// work. Default: /dev/kvm. Tests set it to reach the KVM path (with a
	// stand-in qemu) on hosts without KVM.
	kvmDevice string
}

// Result tells what Run did.
type Result struct {
	// Layers is what was written to Output/layers.json.
	Layers *descriptor.Layers
	// Accel is the accelerator the VM ran under (kvm or tcg).
	Accel string
	// VMTime is the VM's wall time, boot to power-off, under Accel.
	VMTime time.Duration
	// BootTime is how long after qemu started the guest init reported
	// that it was up.
	BootTime time.Duration
	// KVMFallback, when not empty, says why the VM did not come up under
	// KVM and ran again under TCG (AccelAuto only); KVMTime is what the
	// KVM attempt cost.
	KVMFallback string
	KVMTime     time.Duration
	// GuestTimings are the guest's steps in milliseconds.
	GuestTimings map[string]int64
	// StoreWrites are the /nix/store paths the script changed (left out).
	StoreWrites []string
}

// Summary is the one line front-ends print about the VM: the accelerator
// it ran under and its wall time, and the KVM attempt's cost when it fell
// back (the warning logged then says why).
func (r *Result) Summary() string {
	s := fmt.Sprintf("VM %v under %s", r.VMTime.Round(time.Millisecond), r.Accel)
	if r.KVMFallback != "" {
		s += fmt.Sprintf(", after %v trying KVM, where it did not come up", r.KVMTime.Round(time.Millisecond))
	}
	return s
}

// discardLogger is Options.Log's default.
func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func (o *Options) defaults() {
	if o.DiskSizeMiB == 0 {
		o.DiskSizeMiB = DefaultDiskSizeMiB
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Compression == "" {
		o.Compression = layer.DefaultCompression
	}
	if o.Accel == "" {
		o.Accel = AccelAuto
	}
	if o.KVMBootDeadline == 0 {
		o.KVMBootDeadline = DefaultKVMBootDeadline
	}
	if o.Log == nil {
		o.Log = discardLogger()
	}
}

// Validate checks the options that need no file system access.
func (o *Options) Validate() error {
	switch {
	case o.Image == "" && len(o.Layers) == 0:
		return errors.New("runAsRoot: give the image the script runs on (Image, --image) or its layers (Layers, --layers)")
	case o.Script == "":
		return errors.New("runAsRoot: give the script file (Script, --script; runAsRoot in buildImage)")
	case o.Output == "":
		return errors.New("runAsRoot: give the output directory (Output, -o)")
	case o.Kernel == "":
		return newError(ErrMissing, "runAsRoot: give the kernel to boot (vmKernel, --kernel)")
	case o.Modules == "":
		return newError(ErrMissing, "runAsRoot: give the kernel's module directory, the one holding modules.dep (vmModules, --modules)")
	case o.Qemu == "":
		return newError(ErrMissing, "runAsRoot: give the qemu-system binary (qemu, --qemu)")
	case o.DiskSizeMiB < 0 || o.MemoryMiB < 0 || o.Timeout < 0:
		return errors.New("runAsRoot: diskSize, buildVMMemorySize and runAsRootTimeout must not be negative")
	case o.KVMBootDeadline < 0:
		return fmt.Errorf("runAsRoot: the KVM boot deadline (KVMBootDeadline, --kvm-boot-deadline) is %v; it must not be negative", o.KVMBootDeadline)
	case o.MemoryMiB != 0 && o.MemoryMiB < 128:
		return fmt.Errorf("runAsRoot: buildVMMemorySize (--memory) is %d MiB; the VM needs at least 128", o.MemoryMiB)
	}
	switch o.Accel {
	case "", AccelAuto, AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("runAsRoot: the accelerator (runAsRootAccel, --accel) must be auto, kvm or tcg, not %q", o.Accel)
	}
	return nil
}

// Run boots the VM, runs the script and writes Output/layer.tar and
// Output/layers.json (one layer, history created_by "runAsRoot"). On
// error neither file is left behind.
func Run(ctx context.Context, opts Options) (*Result, error) {
	o := opts
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	if err := o.checkFiles(); err != nil {
		return nil, err
	}
	modules, err := ResolveModules(o.Modules, GuestModules)
	if err != nil {
		return nil, err
	}
	layers, created, env, err := o.loadImage(ctx)
	if err != nil {
		return nil, err
	}
	script, err := os.ReadFile(o.Script)
	if err != nil {
		return nil, fmt.Errorf("reading runAsRoot script: %w", err)
	}
	storePaths, err := closurePaths(o.ClosureGraphs, o.StorePaths)
	if err != nil {
		return nil, err
	}
	accel, err := o.firstAccel()
	if err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp(o.TempDir, "nixoci-vm-")
	if err != nil {
		return nil, fmt.Errorf("creating VM work directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	job := &wire.Job{
		Shell:     o.Shell,
		Env:       env,
		Created:   created,
		UpperMiB:  o.DiskSizeMiB,
		MemoryMiB: o.MemoryMiB,
	}
	for _, m := range modules {
		job.Modules = append(job.Modules, m.Name)
	}
	input := filepath.Join(tmp, "input.raw")
	unpacked, err := writeInput(ctx, input, layers, storePaths, script, job)
	if err != nil {
		return nil, err
	}
	// Room for the unpacked files: their tar size plus a margin for
	// tmpfs' per-file rounding to pages.
	job.LowerMiB = unpacked*5/4/mib + 64
	job.OutputSize = wire.HeaderSize + 2*o.DiskSizeMiB*mib + 64*mib
	if err := writeInputHeader(input, job); err != nil {
		return nil, err
	}
	output := filepath.Join(tmp, "output.raw")
	// Swap backs the tmpfs trees (image, closure, scratch) beyond memory.
	swapSize := (job.LowerMiB + o.DiskSizeMiB + 32) * mib
	swap := filepath.Join(tmp, "swap.raw")
	// scratch makes the disks the guest writes, afresh for each boot.
	scratch := func() error {
		if err := createSparse(output, job.OutputSize, []byte(wire.MagicEmpty)); err != nil {
			return err
		}
		return createSparse(swap, swapSize, swapHeader(swapSize))
	}
	if err := scratch(); err != nil {
		return nil, err
	}
	initrd := filepath.Join(tmp, "initrd.cpio")
	if err := o.writeInitrd(initrd, modules); err != nil {
		return nil, err
	}

	m := &machine{
		qemu:      o.Qemu,
		kernel:    o.Kernel,
		initrd:    initrd,
		cmdline:   "console=ttyS0 loglevel=4 panic=-1 oops=panic rdinit=/init " + wire.GuestEnv + "=1",
		memoryMiB: o.MemoryMiB,
		accel:     accel,
		disks: []disk{
			{file: input, serial: wire.SerialInput, readOnly: true},
			{file: output, serial: wire.SerialOutput},
			{file: swap, serial: wire.SerialSwap},
		},
		log: o.Log,
	}
	// The time limit covers a KVM attempt and the TCG run after it.
	deadline := time.Now().Add(o.Timeout)
	boot := func() (*runReport, time.Duration, error) {
		m.accel, m.bootDeadline, m.timeout = accel, 0, time.Until(deadline)
		if accel == AccelKVM {
			m.bootDeadline = o.KVMBootDeadline
		}
		start := time.Now()
		rep, err := m.run(ctx)
		took := time.Since(start)
		o.Log.Debugf("runAsRoot: VM ran %v under %s (guest init up: %v, after %v)", took.Round(time.Millisecond), accel, rep.up, rep.upAfter.Round(time.Millisecond))
		return rep, took, err
	}
	rep, vmTime, err := boot()
	var fallback string
	var kvmTime time.Duration
	if why := kvmFailure(accel, o.KVMBootDeadline, rep, err); why != "" && ctx.Err() == nil {
		if o.Accel == AccelKVM {
			return nil, newError(ErrKVM, "runAsRoot: the VM did not come up under KVM (runAsRootAccel \"kvm\", --accel kvm): %s. Use \"auto\" to fall back to TCG emulation where KVM does not work, or \"tcg\". Last console lines:\n%s", why, indent(rep.console))
		}
		o.Log.Warnf("runAsRoot: the VM did not come up under KVM: %s. It runs again under TCG emulation, which is much slower; runAsRootAccel \"tcg\" (--accel tcg) skips the KVM attempt", why)
		fallback, kvmTime, accel = why, vmTime, AccelTCG
		if err := scratch(); err != nil {
			return nil, err
		}
		rep, vmTime, err = boot()
	}
	after := ""
	if fallback != "" {
		after = " (after falling back from KVM)"
	}
	if errors.Is(err, ErrTimeout) {
		return nil, newError(ErrTimeout, "runAsRoot: the VM did not finish within runAsRootTimeout (--timeout) of %v%s; increase it if the script needs longer. Last console lines:\n%s", o.Timeout, after, indent(rep.console))
	}
	if err != nil {
		started := "the guest init started"
		if !rep.up {
			started = "the guest init never started (is the kernel, vmKernel or --kernel, one qemu can boot?)"
		}
		return nil, &Error{Kind: ErrVMFailed, Msg: fmt.Sprintf("runAsRoot: the VM did not run%s: %v; %s. Last console lines:\n%s", after, err, started, indent(rep.console))}
	}
	res, err := o.readResult(output, rep)
	if err != nil {
		return nil, err
	}
	if res.StoreWritesTotal > 0 {
		more := ""
		if res.StoreWritesTotal > len(res.StoreWrites) {
			more = fmt.Sprintf(" (and %d more)", res.StoreWritesTotal-len(res.StoreWrites))
		}
		noun := "paths"
		if res.StoreWritesTotal == 1 {
			noun = "path"
		}
		o.Log.Warnf("runAsRoot: the script changed %d %s under /nix/store, which the layer leaves out (the store is immutable; put files there with copyToRoot or a derivation instead): %s%s",
			res.StoreWritesTotal, noun, strings.Join(res.StoreWrites, ", "), more)
	}
	ls, err := o.writeOutput(ctx, output, res)
	if err != nil {
		return nil, err
	}
	return &Result{Layers: ls, Accel: accel, VMTime: vmTime, BootTime: rep.upAfter, KVMFallback: fallback, KVMTime: kvmTime, GuestTimings: res.Timings, StoreWrites: res.StoreWrites}, nil
}

// firstAccel returns the accelerator to boot with first. AccelAuto without
// a usable /dev/kvm warns and gives TCG; AccelKVM without one fails.
func (o *Options) firstAccel() (string, error) {
	switch o.Accel {
	case AccelTCG:
		return AccelTCG, nil
	case AccelKVM:
		if err := kvmUsable(o.kvmDevice); err != nil {
			return "", newError(ErrKVM, "runAsRoot: runAsRootAccel \"kvm\" (--accel kvm) needs KVM, but %v. In a sandboxed Nix build, requireKVM = true gives the builder /dev/kvm; or use \"auto\" or \"tcg\"", err)
		}
		return AccelKVM, nil
	}
	if err := kvmUsable(o.kvmDevice); err != nil {
		o.Log.Warnf("runAsRoot: KVM is not usable (%v), so the VM runs under TCG emulation, which is much slower", err)
		return AccelTCG, nil
	}
	return AccelKVM, nil
}

// kvmFailure says why a boot under KVM did not come up, or returns "" when
// it did (or was not under KVM, or failed for a reason a TCG run would
// share, such as the time limit or a qemu that does not start).
func kvmFailure(accel string, deadline time.Duration, rep *runReport, err error) string {
	if accel != AccelKVM || rep.up {
		return ""
	}
	last := "(none)"
	if n := len(rep.console); n > 0 {
		quoted := make([]string, 0, 3)
		for _, l := range rep.console[max(0, n-3):] {
			quoted = append(quoted, strconv.Quote(l))
		}
		last = strings.Join(quoted, ", ")
	}
	var exit *exec.ExitError
	switch {
	case errors.Is(err, errNoBootReport):
		return fmt.Sprintf("the guest init did not report that it was up within the KVM boot deadline of %v, so qemu was stopped; the console's last lines: %s", deadline, last)
	case err == nil:
		return "qemu exited before the guest init started; its last lines: " + last
	case errors.As(err, &exit):
		return fmt.Sprintf("qemu exited (%v) before the guest init started; its last lines: %s", exit, last)
	}
	return ""
}

// checkFiles checks that the kernel, qemu, module directory and init exist.
func (o *Options) checkFiles() error {
	if _, err := os.Stat(o.Kernel); err != nil {
		return newError(ErrMissing, "runAsRoot: the VM kernel %s (vmKernel, --kernel) is missing: %v", o.Kernel, err)
	}
	if fi, err := os.Stat(o.Modules); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return newError(ErrMissing, "runAsRoot: the kernel module directory %s (vmModules, --modules) is missing: %v", o.Modules, err)
	}
	q, err := exec.LookPath(o.Qemu)
	if err != nil {
		return newError(ErrMissing, "runAsRoot: qemu %s (qemu, --qemu) is missing: %v", o.Qemu, err)
	}
	o.Qemu = q
	if o.Init == "" {
		if o.Init, err = os.Executable(); err != nil {
			return fmt.Errorf("runAsRoot: finding this nixoci binary for the guest: %w (give the guest init: Init, --init)", err)
		}
	}
	if err := isELF(o.Init); err != nil {
		return newError(ErrMissing, "runAsRoot: the guest init %s (guestNixoci, --init) is not usable: %v", o.Init, err)
	}
	return nil
}

// loadImage returns the layers the script's root is made of, the time for
// the layer's entries and the script's environment.
func (o *Options) loadImage(ctx context.Context) ([]layer.Layer, time.Time, []string, error) {
	var layers []layer.Layer
	created := defaultCreated
	var imgEnv []string
	if o.Image != "" {
		img, err := image.Load(ctx, o.Image)
		if err != nil {
			return nil, created, nil, err
		}
		layers = append(layers, img.Layers...)
		if img.Created != nil {
			created = *img.Created
		}
		imgEnv = img.Config.Env
	}
	for _, f := range o.Layers {
		ls, err := layer.LoadFile(ctx, f)
		if err != nil {
			return nil, created, nil, err
		}
		layers = append(layers, ls...)
	}
	if o.Created != nil {
		created = *o.Created
	}
	path := DefaultPath
	var env []string
	for _, e := range imgEnv {
		name, val, _ := strings.Cut(e, "=")
		switch name {
		case "PATH":
			path = val
		case "HOME":
		default:
			env = append(env, e)
		}
	}
	env = append(env, "HOME=/root", "PATH="+path)
	env = append(env, o.Env...)
	return layers, created.UTC(), env, nil
}

func (o *Options) writeInitrd(file string, modules []Module) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("creating initramfs: %w", err)
	}
	if err := writeInitramfs(f, o.Init, modules); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing initramfs: %w", err)
	}
	return nil
}

// readResult reads the guest's result and turns failures into errors.
func (o *Options) readResult(output string, rep *runReport) (*wire.Result, error) {
	console := rep.console
	f, err := os.Open(output)
	if err != nil {
		return nil, fmt.Errorf("reading VM output disk: %w", err)
	}
	defer f.Close()
	var res wire.Result
	_, err = wire.ReadHeader(f, wire.MagicOutput, &res)
	if errors.Is(err, wire.ErrNoHeader) {
		hint := ""
		if tail := strings.Join(console, "\n"); strings.Contains(tail, "Out of memory") || strings.Contains(tail, "Kernel panic - not syncing: System is deadlocked on memory") {
			hint = fmt.Sprintf(" The VM ran out of memory: increase buildVMMemorySize (--memory), now %d MiB.", o.MemoryMiB)
			err = ErrOutOfMemory
		} else {
			err = ErrVMFailed
		}
		started := "the guest init started"
		if !rep.up {
			started = "the guest init never started (is the kernel, vmKernel or --kernel, one qemu can boot?)"
		}
		return nil, newError(err, "runAsRoot: the VM stopped before the guest reported a result; %s.%s Last console lines:\n%s", started, hint, indent(console))
	}
	if err != nil {
		return nil, fmt.Errorf("runAsRoot: VM output disk: %w", err)
	}
	switch res.Status {
	case wire.StatusOK:
		return &res, nil
	case wire.StatusError:
		return nil, newError(ErrVMFailed, "runAsRoot: in the VM: %s", res.Error)
	case wire.StatusScriptFailed:
	default:
		return nil, fmt.Errorf("runAsRoot: the VM reported an unknown status %q: %w", res.Status, ErrVMFailed)
	}
	log := make([]byte, res.Log.Length)
	if _, err := io.ReadFull(res.Log.Reader(f), log); err != nil {
		return nil, fmt.Errorf("runAsRoot: reading the script's output from the VM output disk: %w", err)
	}
	how := fmt.Sprintf("exited with status %d", res.ExitCode)
	if res.Signal != "" {
		how = "was killed by " + res.Signal
	}
	cause := ErrScriptFailed
	extra := ""
	switch {
	case res.DiskFull:
		cause = ErrDiskFull
		extra = fmt.Sprintf(" The scratch disk for the script's changes is full: increase diskSize (--disk-size), now %d MiB.", o.DiskSizeMiB)
	case res.OutOfMemory:
		cause = ErrOutOfMemory
		extra = fmt.Sprintf(" The VM ran out of memory and the kernel killed a process: increase buildVMMemorySize (--memory), now %d MiB.", o.MemoryMiB)
	}
	if res.ExitCode == 0 && res.Signal == "" {
		how = "succeeded, but its changes cannot be kept"
	}
	trunc := ""
	if res.LogTruncated {
		trunc = " (last part)"
	}
	out := strings.TrimRight(string(log), "\n")
	if out == "" {
		out = "(no output)"
	}
	return nil, newError(cause, "runAsRoot: the script %s.%s Its output%s:\n%s", how, extra, trunc, indent(strings.Split(out, "\n")))
}

// writeOutput copies the changes tar out of the output disk into
// Output/layer.tar, describes it and writes Output/layers.json last.
func (o *Options) writeOutput(ctx context.Context, output string, res *wire.Result) (_ *descriptor.Layers, err error) {
	if err := os.MkdirAll(o.Output, 0o755); err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	out, err := filepath.Abs(o.Output)
	if err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	tarFile := filepath.Join(out, LayerFile)
	defer func() {
		if err != nil {
			os.Remove(tarFile)
		}
	}()
	src, err := os.Open(output)
	if err != nil {
		return nil, fmt.Errorf("reading VM output disk: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(out, "."+LayerFile+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("writing layer tar: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, res.Tar.Reader(src)); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing layer tar %s: %w", tarFile, err)
	}
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing layer tar %s: %w", tarFile, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing layer tar %s: %w", tarFile, err)
	}
	if err := os.Rename(tmp.Name(), tarFile); err != nil {
		return nil, fmt.Errorf("writing layer tar %s: %w", tarFile, err)
	}
	l, err := layer.DescribeTar(ctx, tarFile, o.Compression, &descriptor.History{CreatedBy: CreatedBy})
	if err != nil {
		return nil, err
	}
	if err := layer.WriteFile(filepath.Join(out, LayersFile), []layer.Layer{l}); err != nil {
		return nil, err
	}
	ls := &descriptor.Layers{Nixoci: descriptor.Version, Layers: []descriptor.Layer{l.(layer.Describer).Descriptor()}}
	return ls, nil
}

// indent formats console or output lines for an error message.
func indent(lines []string) string {
	if len(lines) == 0 {
		return "    (nothing)"
	}
	const max = 200
	if len(lines) > max {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-max)}, lines[len(lines)-max:]...)
	}
	return "    " + strings.Join(lines, "\n    ")
}
