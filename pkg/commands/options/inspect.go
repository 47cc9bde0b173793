package options

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/transports"
)

// InspectOptions are the flags and argument of `nixoci inspect`.
type InspectOptions struct {
	// Image is the descriptor file, from the nix:IMAGE.json argument.
	Image string
	// JSON prints machine-readable JSON instead of text.
	JSON bool
	// Dest is the destination (a reference, or only its transport name)
	// whose view of the image is printed; DestTransport is its transport.
	Dest, DestTransport string
}

// Flags returns the flags of `nixoci inspect`, filling o.
func (o *InspectOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print {manifest, config, layers} as JSON", Destination: &o.JSON},
		&cli.StringFlag{Name: "dest", Usage: "print what is sent to `DEST`: a destination reference (docker-daemon:app:v1) or a transport name (docker, docker-daemon, containers-storage, oci, …)", Value: "docker", Destination: &o.Dest},
	}
}

// Complete takes the nix:IMAGE.json argument.
func (o *InspectOptions) Complete(c *cli.Context) (err error) {
	o.Image, err = oneDescriptorArg(c.Args().Slice())
	return err
}

// Validate checks that the descriptor exists and the destination's
// transport is known.
func (o *InspectOptions) Validate() error {
	name, _, _ := strings.Cut(o.Dest, ":")
	if transports.Get(name) == nil {
		return fmt.Errorf("--dest %s: unknown transport %q: use one of %s", o.Dest, name, strings.Join(transports.ListNames(), ", "))
	}
	o.DestTransport = name
	return checkDescriptor(o.Image)
}
