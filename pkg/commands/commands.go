package commands

import (
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// New returns the nixoci application with every subcommand registered.
func New() *cli.App {
	var debug bool
	app := &cli.App{
		Name:                 "nixoci",
		Usage:                "build container images from Nix store paths and copy them without tarballs",
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "log details to stderr", Destination: &debug},
		},
		Before: func(*cli.Context) error {
			setupLogging(debug)
			return nil
		},
	}
	// Each add* function lives in the file named after its subcommand.
	for _, add := range []func(*cli.App){
		addLayers,            // layers.go
		addImage,             // image.go
		addIndex,             // index.go
		addInspect,           // inspect.go
		addCopy,              // copy.go
		addVerify,            // verify.go
		addImageFromDir,      // pull.go
		addImageFromManifest, // pull.go
		addNixBuild,          // nixbuild.go (derivation builder entry points)
		addRunAsRoot,         // runasroot.go
		addSave,              // save.go
		addExport,            // export.go
	} {
		add(app)
	}
	return app
}

// setupLogging shows only warnings and errors unless --debug is given.
func setupLogging(debug bool) {
	logrus.SetOutput(os.Stderr)
	logrus.SetLevel(logrus.WarnLevel)
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
}
