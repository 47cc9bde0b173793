package commands

import (
	"fmt"
	"runtime"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/vm"
)

// addRunAsRoot registers `nixoci run-as-root`.
func addRunAsRoot(app *cli.App) {
	var (
		o       vm.Options
		layers  cli.StringSlice
		paths   cli.StringSlice
		graphs  cli.StringSlice
		env     cli.StringSlice
		created string
	)
	app.Commands = append(app.Commands, &cli.Command{
		Name:  "run-as-root",
		Usage: "run a script as root in a VM over an image's layers and describe its changes as one layer",
		Description: `Boots a qemu VM (KVM when /dev/kvm is usable, else TCG emulation, which is
much slower) whose init is nixoci itself. In the VM, the image's layers are
unpacked in order and overlaid, the script runs as root in a chroot of that
root with /proc, /sys and /dev mounted, HOME=/root, a sane PATH and no
network, and its changes become a layer tar: new and changed files with
their owners and modes, deletions as .wh. whiteouts, replaced directories as
opaque whiteouts, times set to --created. Changes under /nix/store are left
out (with a warning). Writes OUT/layer.tar and OUT/layers.json (pass it to
` + "`nixoci image`" + ` after the image's layers); nothing is written when anything fails.

The VM parts: --kernel is the kernel image (for example Debian's
/boot/vmlinuz-*-cloud-amd64 or nixpkgs' linux/bzImage), --modules its module
directory (holding modules.dep: virtio_pci, virtio_blk and overlay are
loaded from it unless built in), --qemu the qemu-system binary, and --init
the nixoci binary the VM runs as its init (default: this one; a static
CGO_ENABLED=0 build is best, a dynamic one is shipped with its libraries).

Example:
   nixoci run-as-root --image ./result --script setup.sh \
     --kernel /boot/vmlinuz-6.1.0-56-cloud-amd64 \
     --modules /lib/modules/6.1.0-56-cloud-amd64 -o out
   nixoci image -o image.json --name app --from-image ./result out/layers.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "image", Usage: "image descriptor `FILE` (or directory holding image.json) whose layers make the script's root", Destination: &o.Image},
			&cli.StringSliceFlag{Name: "layers", Usage: "layers descriptor `FILE` whose layers go on top of the image's (repeatable)", Destination: &layers},
			&cli.StringFlag{Name: "script", Usage: "the script `FILE`; a #! line is honoured, else it runs with --shell", Destination: &o.Script},
			&cli.StringFlag{Name: "shell", Usage: "interpreter `PATH` (in the image or the store paths) for a script without #!; default: the image's /bin/sh", Destination: &o.Shell},
			&cli.StringSliceFlag{Name: "store-path", Usage: "store `PATH` shown to the script under /nix/store, as given: pass whole closures (repeatable)", Destination: &paths},
			&cli.StringSliceFlag{Name: "closure-graph", Usage: "Nix exportReferencesGraph `FILE` whose store paths are shown to the script (repeatable)", Destination: &graphs},
			&cli.StringSliceFlag{Name: "env", Usage: "`NAME=VALUE` added to the script's environment (repeatable)", Destination: &env},
			&cli.StringFlag{Name: "kernel", Usage: "kernel image `FILE` the VM boots", EnvVars: []string{"NIXOCI_VM_KERNEL"}, Destination: &o.Kernel},
			&cli.StringFlag{Name: "modules", Usage: "the kernel's module `DIR` (holding modules.dep)", EnvVars: []string{"NIXOCI_VM_MODULES"}, Destination: &o.Modules},
			&cli.StringFlag{Name: "qemu", Usage: "qemu-system `BINARY` (path, or name looked up in PATH)", EnvVars: []string{"NIXOCI_QEMU"}, Value: defaultQemu(), Destination: &o.Qemu},
			&cli.StringFlag{Name: "init", Usage: "nixoci `BINARY` run as the VM's init; default: this one", EnvVars: []string{"NIXOCI_VM_INIT"}, Destination: &o.Init},
			&cli.Int64Flag{Name: "disk-size", Usage: "`MiB` of scratch space for the script's changes", Value: vm.DefaultDiskSizeMiB, Destination: &o.DiskSizeMiB},
			&cli.Int64Flag{Name: "memory", Usage: "`MiB` of VM memory", Value: vm.DefaultMemoryMiB, Destination: &o.MemoryMiB},
			&cli.DurationFlag{Name: "timeout", Usage: "time `LIMIT` for the whole VM run", Value: vm.DefaultTimeout, Destination: &o.Timeout},
			&cli.StringFlag{Name: "created", Usage: "RFC 3339 `TIME` of the layer's entries, or \"now\"; default: the image's created time", Destination: &created},
			&cli.StringFlag{Name: "compression", Usage: "layer compression: gzip, zstd or none", Value: "gzip", Destination: &o.Compression},
			&cli.StringFlag{Name: "accel", Usage: "VM accelerator: auto (KVM when /dev/kvm is usable, else TCG), kvm or tcg", Value: vm.AccelAuto, Destination: &o.Accel},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `DIR` for layer.tar and layers.json", Destination: &o.Output},
		},
		Before: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("run-as-root takes no arguments (got %q): give the image with --image and the script with --script", c.Args().First())
			}
			o.Layers, o.StorePaths, o.ClosureGraphs, o.Env = layers.Value(), paths.Value(), graphs.Value(), env.Value()
			t, err := parseCreated(created)
			if err != nil {
				return err
			}
			o.Created = t
			o.Log = logrus.StandardLogger()
			return o.Validate()
		},
		Action: func(c *cli.Context) error {
			res, err := vm.Run(c.Context, o)
			if err != nil {
				return err
			}
			l := res.Layers.Layers[0]
			fmt.Fprintf(c.App.ErrWriter, "run-as-root: layer %s (%d bytes uncompressed), %s\n", l.DiffID, l.UncompressedSize, res.Summary())
			return nil
		},
	})
}

// defaultQemu is the qemu-system binary for this machine's architecture.
func defaultQemu() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i386", "ppc64le": "ppc64", "riscv64": "riscv64", "s390x": "s390x"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return "qemu-system-" + arch
}

// parseCreated parses --created; empty leaves the image's created time.
func parseCreated(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := image.ParseCreated(s, nil)
	if err != nil {
		return nil, fmt.Errorf("--created: %w", err)
	}
	return &t, nil
}
