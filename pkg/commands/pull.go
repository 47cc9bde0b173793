package commands

import (
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/pull"
)

// pullOptions turns the platform flags into pkg/pull options.
func pullOptions(o options.PlatformOptions) pull.Options {
	return pull.Options{OS: o.OS, Arch: o.Arch, Variant: o.Variant, Name: o.Name, Tag: o.Tag, Log: logrus.StandardLogger()}
}

// addImageFromDir registers `nixoci image-from-dir`.
func addImageFromDir(app *cli.App) {
	var o options.ImageFromDirOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "image-from-dir",
		Usage:     "describe a pulled image (a dir: layout) as an image descriptor usable with --from-image",
		ArgsUsage: "DIR",
		Description: `Reads a containers/image dir: layout, as written by
` + "`nixoci copy docker://… dir:DIR`" + `, checks every blob against its digest, and
writes an image descriptor whose layers point at the blob files. With an index
(a copy with --all) the image for --os/--arch/--variant is taken.

Example:
   nixoci copy docker://docker.io/library/alpine:3.20 dir:alpine
   nixoci image-from-dir -o alpine.json --name alpine --tag 3.20 alpine
   nixoci image -o image.json --name app --from-image alpine.json layers.json`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			img, err := pull.FromDir(c.Context, o.Dir, pullOptions(o.PlatformOptions))
			if err != nil {
				return err
			}
			return descriptor.Write(o.Output, img)
		},
	})
}

// addImageFromManifest registers `nixoci image-from-manifest`.
func addImageFromManifest(app *cli.App) {
	var o options.ImageFromManifestOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:  "image-from-manifest",
		Usage: "describe a pulled image given as a manifest and one file per blob",
		Description: `Reads an image manifest (or an index, picking --os/--arch/--variant) and the
files holding its blobs, checks each against its digest, and writes an image
descriptor whose layers point at those files. This is what the Nix library's
pullImageFromManifest does with one fixed-output derivation per blob.

Example:
   nixoci image-from-manifest -o base.json --name alpine --manifest manifest.json \
     --blob sha256:4a1c…=/nix/store/…-blob --blob sha256:9f0e…=/nix/store/…-blob`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			fromManifest := func() (*descriptor.Image, error) {
				return pull.FromManifest(c.Context, o.Manifest, o.BlobFiles, pullOptions(o.PlatformOptions))
			}
			if o.Spec != "" {
				fromManifest = func() (*descriptor.Image, error) {
					return pull.FromManifestSpec(c.Context, o.Spec, pullOptions(o.PlatformOptions))
				}
			}
			img, err := fromManifest()
			if err != nil {
				return err
			}
			return descriptor.Write(o.Output, img)
		},
	})
}
