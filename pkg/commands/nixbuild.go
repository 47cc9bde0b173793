package commands

import (
	"fmt"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/nixbuild"
	"github.com/nixoci/nixoci/pkg/registry"
)

// addNixBuild registers `nixoci nix-build`, the builder of the nix/
// library's derivations (hidden: Nix runs it, people do not).
func addNixBuild(app *cli.App) {
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "nix-build",
		Hidden:    true,
		Usage:     "build one derivation of the nix/ library (run by Nix as the builder)",
		ArgsUsage: "KIND",
		Description: `Reads the derivation's structured attributes ($NIX_ATTRS_JSON_FILE, else
.attrs.json in $NIX_BUILD_TOP) and writes its outputs. KIND is one of:
   ` + strings.Join(nixbuild.Kinds(), ", ") + `.
The nix/ library sets this up; there is no reason to run it by hand.`,
		Subcommands: []*cli.Command{getManifestCommand()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("nix-build: give one derivation KIND (%s)", strings.Join(nixbuild.Kinds(), ", "))
			}
			return nixbuild.Run(c.Context, c.Args().First(), nixbuild.AttrsFile(os.Getenv), os.Getenv("NIX_BUILD_TOP"), logrus.StandardLogger())
		},
	})
}

// getManifestCommand is `nixoci nix-build get-manifest`, run by
// pullImageFromManifest's getManifest script.
func getManifestCommand() *cli.Command {
	var o options.GetManifestOptions
	return &cli.Command{
		Name:      "get-manifest",
		Usage:     "print the image manifest of a registry image, picking the platform from an index",
		ArgsUsage: "docker://HOST/NAME:TAG",
		Flags:     o.Flags(),
		Before:    options.Before(&o),
		Action: func(c *cli.Context) error {
			data, _, err := registry.GetManifest(c.Context, o.Reference, o.Registry)
			if err != nil {
				return err
			}
			if _, err := c.App.Writer.Write(data); err != nil {
				return fmt.Errorf("writing manifest: %w", err)
			}
			return nil
		},
	}
}
