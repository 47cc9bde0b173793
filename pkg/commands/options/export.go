package options

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// ExportOptions are the flags and argument of `nixoci export`.
type ExportOptions struct {
	// Output is the tar file written (-o); empty writes to standard output.
	Output string
	// FromImageName and FromImageTag choose an image of a docker-archive
	// that holds several, as dockerTools' fromImageName and fromImageTag.
	FromImageName, FromImageTag string
	// Image is the image (the argument): nix:IMAGE.json, a directory
	// holding image.json, or a docker-archive file.
	Image string
	// stdoutTerminal is set when standard output is a terminal.
	stdoutTerminal bool
}

// Flags returns the flags of `nixoci export`, filling o.
func (o *ExportOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the tar to `FILE` (default: standard output)", Destination: &o.Output},
		&cli.StringFlag{Name: "from-image-name", Usage: "with --from-image-tag, export the image named `NAME` of a docker-archive that holds several (default: the first)", Destination: &o.FromImageName},
		&cli.StringFlag{Name: "from-image-tag", Usage: "with --from-image-name, the `TAG` of the image to export", Destination: &o.FromImageTag},
	}
}

// Complete takes the image argument.
func (o *ExportOptions) Complete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("give exactly one image: nix:IMAGE.json or a docker-archive file")
	}
	p, err := DescriptorPath(c.Args().First())
	if err != nil {
		return err
	}
	o.Image = p
	o.stdoutTerminal = term.IsTerminal(int(os.Stdout.Fd()))
	return nil
}

// Validate checks the image and where the tar goes.
func (o *ExportOptions) Validate() error {
	if _, err := os.Stat(o.Image); err != nil {
		return fmt.Errorf("image %s: %w", o.Image, err)
	}
	if o.Output == "" {
		if o.stdoutTerminal {
			return errors.New("standard output is a terminal: give -o FILE, or pipe the tar into `docker import -`")
		}
		return nil
	}
	return checkOutput("-o", o.Output)
}
