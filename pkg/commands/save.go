package commands

import (
	"context"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/internal/atomic"
	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/save"
)

// addSave registers `nixoci save`.
func addSave(app *cli.App) {
	var o options.SaveOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "save",
		Usage:     "write images as one docker-archive, streamed from the store, for `docker load`",
		ArgsUsage: "IMAGE...",
		Description: `Writes the images as one docker-archive, as ` + "`docker save`" + ` does, to standard
output or -o FILE, streaming each layer from where it is (store paths, a
stored tar or blob, another archive); nothing is written to disk on the way.
An IMAGE is nix:IMAGE.json (or a directory holding image.json, such as a Nix
result, or a nix2container image.json), loaded as its descriptor's name:tag,
or a docker-archive file, whose images are all copied with their names. The
same images give the same bytes. This is what the Nix library's
streamLayeredImage script, buildLayeredImage's tarball and mergeImages run.

Examples:
   nixoci save nix:./result | docker load
   nixoci save --tag hello:v1 -o hello.tar nix:image.json
   nixoci save --compression gzip -o both.tar.gz nix:a.json nix:b.json`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			var images []save.Image
			for _, p := range o.Images {
				imgs, err := save.Read(c.Context, p, o.Tags.Value())
				if err != nil {
					return err
				}
				images = append(images, imgs...)
			}
			opts := save.Options{Compression: o.Compression}
			return writeOut(c.Context, c.App.Writer, o.Output, func(ctx context.Context, w io.Writer) error {
				return save.Write(ctx, w, images, opts)
			})
		},
	})
}

// writeOut runs write into the file output (all at once: nothing is left
// of a failed write), or into stdout when output is empty.
func writeOut(ctx context.Context, stdout io.Writer, output string, write func(context.Context, io.Writer) error) error {
	if output == "" {
		return write(ctx, stdout)
	}
	return atomic.WriteFile(output, 0o644, func(w io.Writer) error { return write(ctx, w) })
}
