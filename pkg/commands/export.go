package commands

import (
	"context"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/flatten"
	"github.com/nixoci/nixoci/pkg/image"
)

// addExport registers `nixoci export`.
func addExport(app *cli.App) {
	var o options.ExportOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "export",
		Usage:     "write an image's file system as one flattened tar, for `docker import`",
		ArgsUsage: "IMAGE",
		Description: `Applies the image's layers in order and writes the file system they make as
one tar, to standard output or -o FILE: whiteouts (also opaque ones) are
applied and none is written, hard links whose target a later layer replaced
become files. ` + "`docker import`" + ` takes the result; the image config is not in it.
IMAGE is nix:IMAGE.json (or a directory holding image.json, or a nix2container
image.json) or a docker-archive file, plain, gzip or zstd. No VM is needed.
This is what the Nix library's exportImage runs.

Examples:
   nixoci export -o rootfs.tar nix:./result
   nixoci export --from-image-name app --from-image-tag v1 saved.tar | docker import - app-flat`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			// The layers are only read as tars: no compression work.
			img, err := image.Read(c.Context, o.Image, image.ReadOptions{Name: o.FromImageName, Tag: o.FromImageTag, Compression: descriptor.None})
			if err != nil {
				return err
			}
			layers := make([]flatten.Layer, len(img.Layers))
			for i, l := range img.Layers {
				layers[i] = l
			}
			return writeOut(c.Context, c.App.Writer, o.Output, func(ctx context.Context, w io.Writer) error {
				return flatten.Write(ctx, w, layers)
			})
		},
	})
}
