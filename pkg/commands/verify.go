package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/verify"
)

// addVerify registers `nixoci verify`.
func addVerify(app *cli.App) {
	var o options.VerifyOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "verify",
		Usage:     "re-stream every layer and check it against the image descriptor",
		ArgsUsage: "nix:IMAGE.json",
		Description: `Streams each layer again, in parallel, and compares its digests and sizes
with the descriptor. On a mismatch it exits non-zero naming the layer, the
store path and, where it can, the file whose bytes, mode or type changed.

Example:
   nixoci verify nix:./result`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			img, err := image.Load(c.Context, o.Image)
			if err != nil {
				return err
			}
			report, err := verify.Image(c.Context, img)
			if err != nil {
				return fmt.Errorf("verifying %s: %w", o.Image, err)
			}
			for _, l := range report.Layers {
				fmt.Fprintf(c.App.Writer, "layer %d %s: ok", l.Index, l.Digest)
				if l.Note != "" {
					fmt.Fprintf(c.App.Writer, " (%s)", l.Note)
				}
				fmt.Fprintln(c.App.Writer)
			}
			return nil
		},
	})
}
