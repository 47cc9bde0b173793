package commands

import (
	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/urfave/cli/v2"
)

// addImage registers `nixoci image`.
func addImage(app *cli.App) {
	var o options.ImageOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "image",
		Usage:     "write an image descriptor from layers descriptors and a config",
		ArgsUsage: "LAYERS.json...",
		Description: `Puts the layers of the base image (--from-image) first, then the layers of
each LAYERS.json in order, and writes the image descriptor IMAGE.json that
` + "`nixoci copy nix:IMAGE.json DEST`" + ` pushes or loads.

Example:
   nixoci image -o image.json --name hello --tag v1 --config config.json layers.json`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			img, err := image.Assemble(image.AssembleOptions{
				Name:      o.Name,
				Tag:       o.Tag,
				Config:    o.Config,
				Arch:      o.Arch,
				OS:        o.OS,
				Variant:   o.Variant,
				Created:   o.Created,
				FromImage: o.FromImage,
				Rehash:    func(img *descriptor.Image) error { return layer.Rehash(c.Context, img) },
				Layers:    o.Layers,
			})
			if err != nil {
				return err
			}
			return descriptor.Write(o.Output, img)
		},
	})
}
