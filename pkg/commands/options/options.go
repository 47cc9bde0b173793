package options

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// Options is what every subcommand's options struct provides.
type Options interface {
	// Flags returns the command's flags, each with a Destination in the struct.
	Flags() []cli.Flag
	// Complete takes what flags alone cannot fill: the arguments, and
	// whether optional flags were given.
	Complete(c *cli.Context) error
	// Validate checks the filled struct; its errors say what to change.
	Validate() error
}

// Before returns the Before hook of a command: it completes o from the
// parsed command line and validates it, so actions only run on good input.
func Before(o Options) cli.BeforeFunc {
	return func(c *cli.Context) error {
		if err := o.Complete(c); err != nil {
			return err
		}
		return o.Validate()
	}
}

// oneDescriptorArg takes the single nix:IMAGE.json argument.
func oneDescriptorArg(args []string) (string, error) {
	if len(args) != 1 {
		return "", errors.New("give exactly one image: nix:IMAGE.json")
	}
	return DescriptorPath(args[0])
}
