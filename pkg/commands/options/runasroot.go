package options

import (
	"fmt"
	"runtime"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/vm"
)

// RunAsRootOptions are the flags of `nixoci run-as-root`. Each field is
// the vm.Options field of the same meaning; VM turns them into those.
type RunAsRootOptions struct {
	// Image is the image descriptor (file, or directory holding image.json)
	// whose layers make the script's root (--image).
	Image string
	// Layers are layers descriptors whose layers go on top (--layers).
	Layers cli.StringSlice
	// Script is the script file (--script); Shell runs it when it has no
	// #! line (--shell; default: the image's /bin/sh).
	Script, Shell string
	// StorePaths are shown under /nix/store as given (--store-path);
	// ClosureGraphs are exportReferencesGraph files whose paths are shown
	// too (--closure-graph).
	StorePaths, ClosureGraphs cli.StringSlice
	// Env is NAME=VALUE added to the script's environment (--env).
	Env cli.StringSlice
	// Kernel, Modules, Qemu and Init are the VM's parts: the kernel image,
	// its module directory, the qemu-system binary and the nixoci binary
	// run as the VM's init (--kernel, --modules, --qemu, --init; the first
	// three also from NIXOCI_VM_KERNEL, NIXOCI_VM_MODULES, NIXOCI_QEMU).
	Kernel, Modules, Qemu, Init string
	// DiskSizeMiB is the scratch space for the changes (--disk-size);
	// MemoryMiB the VM's memory (--memory).
	DiskSizeMiB, MemoryMiB int64
	// Timeout bounds the whole VM run, a KVM attempt included (--timeout).
	Timeout time.Duration
	// Created is the RFC 3339 time of the layer's entries, or "now";
	// empty keeps the image's created time (--created).
	Created string
	// Compression is the layer's blob compression (--compression).
	Compression string
	// Accel is auto, kvm or tcg (--accel); KVMBootDeadline is how long the
	// guest has to come up under KVM (--kvm-boot-deadline). See vm.Options.
	Accel           string
	KVMBootDeadline time.Duration
	// Output is the directory receiving layer.tar and layers.json (-o).
	Output string
}

// Flags returns the flags of `nixoci run-as-root`, filling o.
func (o *RunAsRootOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "image", Usage: "image descriptor `FILE` (or directory holding image.json) whose layers make the script's root", Destination: &o.Image},
		&cli.StringSliceFlag{Name: "layers", Usage: "layers descriptor `FILE` whose layers go on top of the image's (repeatable)", Destination: &o.Layers},
		&cli.StringFlag{Name: "script", Usage: "the script `FILE`; a #! line is honoured, else it runs with --shell", Destination: &o.Script},
		&cli.StringFlag{Name: "shell", Usage: "interpreter `PATH` (in the image or the store paths) for a script without #!; default: the image's /bin/sh", Destination: &o.Shell},
		&cli.StringSliceFlag{Name: "store-path", Usage: "store `PATH` shown to the script under /nix/store, as given: pass whole closures (repeatable)", Destination: &o.StorePaths},
		&cli.StringSliceFlag{Name: "closure-graph", Usage: "Nix exportReferencesGraph `FILE` whose store paths are shown to the script (repeatable)", Destination: &o.ClosureGraphs},
		&cli.StringSliceFlag{Name: "env", Usage: "`NAME=VALUE` added to the script's environment (repeatable)", Destination: &o.Env},
		&cli.StringFlag{Name: "kernel", Usage: "kernel image `FILE` the VM boots", EnvVars: []string{"NIXOCI_VM_KERNEL"}, Destination: &o.Kernel},
		&cli.StringFlag{Name: "modules", Usage: "the kernel's module `DIR` (holding modules.dep)", EnvVars: []string{"NIXOCI_VM_MODULES"}, Destination: &o.Modules},
		&cli.StringFlag{Name: "qemu", Usage: "qemu-system `BINARY` (path, or name looked up in PATH)", EnvVars: []string{"NIXOCI_QEMU"}, Value: DefaultQemu(), Destination: &o.Qemu},
		&cli.StringFlag{Name: "init", Usage: "nixoci `BINARY` run as the VM's init; default: this one", EnvVars: []string{"NIXOCI_VM_INIT"}, Destination: &o.Init},
		&cli.Int64Flag{Name: "disk-size", Usage: "`MiB` of scratch space for the script's changes", Value: vm.DefaultDiskSizeMiB, Destination: &o.DiskSizeMiB},
		&cli.Int64Flag{Name: "memory", Usage: "`MiB` of VM memory", Value: vm.DefaultMemoryMiB, Destination: &o.MemoryMiB},
		&cli.DurationFlag{Name: "timeout", Usage: "time `LIMIT` for the whole VM run, a KVM attempt included", Value: vm.DefaultTimeout, Destination: &o.Timeout},
		&cli.StringFlag{Name: "created", Usage: "RFC 3339 `TIME` of the layer's entries, or \"now\"; default: the image's created time", Destination: &o.Created},
		&cli.StringFlag{Name: "compression", Usage: "layer compression `ALGORITHM`: gzip, zstd or none", Value: "gzip", Destination: &o.Compression},
		&cli.StringFlag{Name: "accel", Usage: "VM `ACCELERATOR`: auto (KVM when /dev/kvm opens, falling back to TCG with a warning when the VM does not come up under it), kvm (never falls back) or tcg (never tries KVM)", Value: vm.AccelAuto, Destination: &o.Accel},
		&cli.DurationFlag{Name: "kvm-boot-deadline", Usage: "how long the VM's init has to come up under KVM before qemu is stopped (and, with --accel auto, the VM runs under TCG)", Value: vm.DefaultKVMBootDeadline, Destination: &o.KVMBootDeadline},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `DIR` for layer.tar and layers.json", Destination: &o.Output},
	}
}

// Complete refuses arguments: everything is given by flags.
func (o *RunAsRootOptions) Complete(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("run-as-root takes no arguments (got %q): give the image with --image and the script with --script", c.Args().First())
	}
	return nil
}

// Validate checks the flag values and that the named input files exist;
// the VM's own checks (vm.Options.Validate) run too.
func (o *RunAsRootOptions) Validate() error {
	if err := checkOneOf("--accel", o.Accel, []string{vm.AccelAuto, vm.AccelKVM, vm.AccelTCG}); err != nil {
		return err
	}
	if err := checkOneOf("--compression", o.Compression, compress.Algorithms()); err != nil {
		return err
	}
	if err := checkCreated(o.Created); err != nil {
		return err
	}
	vo, err := o.VM(nil)
	if err != nil {
		return err
	}
	if err := vo.Validate(); err != nil {
		return err
	}
	if err := checkFile("--script", o.Script); err != nil {
		return err
	}
	if o.Image != "" {
		if err := checkDescriptor(o.Image); err != nil {
			return fmt.Errorf("--image: %w", err)
		}
	}
	for _, f := range o.Layers.Value() {
		if err := checkFile("--layers", f); err != nil {
			return err
		}
	}
	for _, f := range o.ClosureGraphs.Value() {
		if err := checkFile("--closure-graph", f); err != nil {
			return err
		}
	}
	return nil
}

// VM returns the library options the flags stand for, logging to log.
func (o *RunAsRootOptions) VM(log logrus.FieldLogger) (vm.Options, error) {
	var created *time.Time
	if o.Created != "" {
		t, err := image.ParseCreated(o.Created, nil)
		if err != nil {
			return vm.Options{}, fmt.Errorf("--created: %w", err)
		}
		created = &t
	}
	return vm.Options{
		Image:           o.Image,
		Layers:          o.Layers.Value(),
		Script:          o.Script,
		Shell:           o.Shell,
		StorePaths:      o.StorePaths.Value(),
		ClosureGraphs:   o.ClosureGraphs.Value(),
		Env:             o.Env.Value(),
		Kernel:          o.Kernel,
		Modules:         o.Modules,
		Qemu:            o.Qemu,
		Init:            o.Init,
		DiskSizeMiB:     o.DiskSizeMiB,
		MemoryMiB:       o.MemoryMiB,
		Timeout:         o.Timeout,
		Created:         created,
		Compression:     o.Compression,
		Accel:           o.Accel,
		KVMBootDeadline: o.KVMBootDeadline,
		Output:          o.Output,
		Log:             log,
	}, nil
}

// DefaultQemu is the qemu-system binary for this machine's architecture,
// the default of --qemu.
func DefaultQemu() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i386", "ppc64le": "ppc64", "riscv64": "riscv64", "s390x": "s390x"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return "qemu-system-" + arch
}
