package options

import (
	"errors"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/registry"
)

// GetManifestOptions are the flags and argument of `nixoci nix-build
// get-manifest`, which pullImageFromManifest's getManifest script runs.
type GetManifestOptions struct {
	// Registry says how to reach the registry and which platform to pick
	// from an index.
	Registry registry.Options
	// Reference is the image, docker://HOST/NAME:TAG (the argument).
	Reference string
}

// Flags returns the flags of `nixoci nix-build get-manifest`, filling o.
func (o *GetManifestOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "os", Usage: "`OS` to pick from an index; default: this machine's", Destination: &o.Registry.OS},
		&cli.StringFlag{Name: "arch", Usage: "architecture `ARCH` to pick from an index (amd64, arm64, …); default: this machine's", Destination: &o.Registry.Arch},
		&cli.StringFlag{Name: "variant", Usage: "architecture `VARIANT` to pick from an index", Destination: &o.Registry.Variant},
		&cli.BoolFlag{Name: "tls-verify", Usage: "verify the registry's TLS certificate (false also allows plain HTTP)", Value: true, Destination: &o.Registry.TLSVerify},
		&cli.StringFlag{Name: "authfile", Usage: "registry auth `FILE`; default: the usual locations", Destination: &o.Registry.AuthFile},
	}
}

// Complete takes the image reference argument.
func (o *GetManifestOptions) Complete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("give one image reference, docker://HOST/NAME:TAG")
	}
	o.Reference = c.Args().First()
	return nil
}

// Validate checks that the reference is a registry one.
func (o *GetManifestOptions) Validate() error {
	if !strings.HasPrefix(o.Reference, "docker://") {
		return errors.New("the image must be a registry reference, docker://HOST/NAME:TAG")
	}
	return nil
}
