package commands

import (
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/vm"
)

// addRunAsRoot registers `nixoci run-as-root`.
func addRunAsRoot(app *cli.App) {
	var o options.RunAsRootOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:  "run-as-root",
		Usage: "run a script as root in a VM over an image's layers and describe its changes as one layer",
		Description: `Boots a qemu VM whose init is nixoci itself. In the VM, the image's layers
are unpacked in order and overlaid, the script runs as root in a chroot of
that root with /proc, /sys and /dev mounted, HOME=/root, a sane PATH and no
network, and its changes become a layer tar: new and changed files with
their owners and modes, deletions as .wh. whiteouts, replaced directories as
opaque whiteouts, times set to --created. Changes under /nix/store are left
out (with a warning). Writes OUT/layer.tar and OUT/layers.json (pass it to
` + "`nixoci image`" + ` after the image's layers); nothing is written when anything fails.
Prints one line with the accelerator the VM ran under and its wall time.

The accelerator: --accel auto (the default) uses KVM when /dev/kvm opens.
When the VM does not come up under it (qemu exits, or the init does not
report within --kvm-boot-deadline), it runs the VM again under TCG
emulation, which is much slower, with one warning saying why. --accel kvm
never falls back and fails instead; --accel tcg never tries KVM.

The VM parts: --kernel is the kernel image (for example Debian's
/boot/vmlinuz-*-cloud-amd64 or nixpkgs' linux/bzImage), --modules its module
directory (holding modules.dep: virtio_pci, virtio_blk and overlay are
loaded from it unless built in), --qemu the qemu-system binary, and --init
the nixoci binary the VM runs as its init (default: this one; a static
CGO_ENABLED=0 build is best, a dynamic one is shipped with its libraries).

Example:
   nixoci run-as-root --image ./result --script setup.sh \
     --kernel /boot/vmlinuz-6.1.0-57-cloud-amd64 \
     --modules /lib/modules/6.1.0-57-cloud-amd64 -o out
   nixoci image -o image.json --name app --from-image ./result out/layers.json`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			vo, err := o.VM(logrus.StandardLogger())
			if err != nil {
				return err
			}
			res, err := vm.Run(c.Context, vo)
			if err != nil {
				return err
			}
			l := res.Layers.Layers[0]
			fmt.Fprintf(c.App.ErrWriter, "run-as-root: layer %s (%d bytes uncompressed), %s\n", l.DiffID, l.UncompressedSize, res.Summary())
			return nil
		},
	})
}
