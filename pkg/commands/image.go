package commands

import (
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
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
			var base *image.Image
			if o.FromImage != "" {
				var err error
				if base, err = image.Read(c.Context, o.FromImage, image.ReadOptions{Name: o.FromImageName, Tag: o.FromImageTag, Compression: o.FromImageCompression}); err != nil {
					return err
				}
			}
			var layers []layer.Layer
			for _, f := range o.Layers {
				ls, err := layer.LoadFile(c.Context, f)
				if err != nil {
					return err
				}
				layers = append(layers, ls...)
			}
			cfg, err := o.LoadConfig()
			if err != nil {
				return err
			}
			if cfg != nil && len(cfg.Ignored) > 0 {
				logrus.Warnf("image config %s: ignoring keys that are not OCI image config fields: %v", o.Config, cfg.Ignored)
			}
			img, err := image.Assemble(image.AssembleOptions{
				Name:    o.Name,
				Tag:     o.Tag,
				Base:    base,
				Layers:  layers,
				Config:  cfg,
				Arch:    o.Arch,
				OS:      o.OS,
				Variant: o.Variant,
				Created: o.Created,
				Log:     logrus.StandardLogger(),
			})
			if err != nil {
				return err
			}
			return image.Write(o.Output, img)
		},
	})
}
