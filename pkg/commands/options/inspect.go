package options

import (
	"github.com/urfave/cli/v2"
)

// InspectOptions are the flags and argument of `nixoci inspect`.
type InspectOptions struct {
	// Image is the descriptor file, from the nix:IMAGE.json argument.
	Image string
	// JSON prints machine-readable JSON instead of text.
	JSON bool
}

// Flags returns the flags of `nixoci inspect`, filling o.
func (o *InspectOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print {manifest, config, layers} as JSON", Destination: &o.JSON},
	}
}

// Complete takes the nix:IMAGE.json argument.
func (o *InspectOptions) Complete(c *cli.Context) (err error) {
	o.Image, err = oneDescriptorArg(c.Args().Slice())
	return err
}

// Validate checks that the descriptor exists.
func (o *InspectOptions) Validate() error {
	return checkDescriptor(o.Image)
}
