package commands

import (
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/image"
)

// addIndex registers `nixoci index`.
func addIndex(app *cli.App) {
	var o options.IndexOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "index",
		Usage:     "write an index descriptor: one image per platform, copied as an OCI image index",
		ArgsUsage: "IMAGE.json...",
		Description: `Writes INDEX.json listing each IMAGE.json (give one per platform, built with
` + "`nixoci image --arch`" + ` or buildImage's arch) with its platform and manifest digest.
` + "`nixoci copy nix:INDEX.json docker://…`" + ` pushes the index and every image, as
` + "`skopeo copy --all`" + ` does; docker-daemon: and containers-storage: get the image
of this machine's platform. The index records each image's absolute path
(symlinks such as result resolved), so keep the images where they are.

Example:
   nixoci index -o index.json --name app --tag v1 amd64/image.json arm64/image.json`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			var images []image.IndexImage
			for _, p := range o.Images {
				path, err := image.ResolveImagePath(p)
				if err != nil {
					return err
				}
				img, err := image.Load(c.Context, path)
				if err != nil {
					return err
				}
				images = append(images, image.IndexImage{Path: path, Image: img})
			}
			idx, err := image.AssembleIndex(o.Name, o.Tag, images)
			if err != nil {
				return err
			}
			return image.WriteIndex(o.Output, idx)
		},
	})
}
