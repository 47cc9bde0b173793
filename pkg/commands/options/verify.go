package options

import (
	"github.com/urfave/cli/v2"
)

// VerifyOptions are the flags and argument of `nixoci verify`.
type VerifyOptions struct {
	// Image is the descriptor file, from the nix:IMAGE.json argument.
	Image string
}

// Flags returns the flags of `nixoci verify`, filling o.
func (o *VerifyOptions) Flags() []cli.Flag { return nil }

// Complete takes the nix:IMAGE.json argument.
func (o *VerifyOptions) Complete(c *cli.Context) (err error) {
	o.Image, err = oneDescriptorArg(c.Args().Slice())
	return err
}

// Validate checks that the descriptor exists.
func (o *VerifyOptions) Validate() error {
	return checkDescriptor(o.Image)
}
