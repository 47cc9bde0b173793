package options

import (
	"errors"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
)

// PlatformOptions select an image of a multi-platform index and name the
// described image.
type PlatformOptions struct {
	// OS, Arch and Variant select the platform (defaults: linux, this
	// machine's architecture, the architecture's default variant).
	OS, Arch, Variant string
	// Name and Tag are recorded in the descriptor for copy scripts.
	Name, Tag string
}

func (o *PlatformOptions) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "os", Usage: "pick the image for `OS` from an index", Value: "linux", Destination: &o.OS},
		&cli.StringFlag{Name: "arch", Usage: "pick the image for architecture `ARCH` from an index (default: this machine's)", Destination: &o.Arch},
		&cli.StringFlag{Name: "variant", Usage: "pick the image for architecture `VARIANT` from an index", Destination: &o.Variant},
		&cli.StringFlag{Name: "name", Usage: "record image `NAME` in the descriptor", Destination: &o.Name},
		&cli.StringFlag{Name: "tag", Usage: "record image `TAG` in the descriptor", Destination: &o.Tag},
	}
}

// ImageFromDirOptions are the flags and argument of `nixoci image-from-dir`.
type ImageFromDirOptions struct {
	PlatformOptions
	// Output is the image descriptor written (-o).
	Output string
	// Dir is a containers/image dir: layout (the argument).
	Dir string
}

// Flags returns the flags of `nixoci image-from-dir`, filling o.
func (o *ImageFromDirOptions) Flags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the image descriptor to `IMAGE.json` (required)", Destination: &o.Output},
	}, o.flags()...)
}

// Complete takes the DIR argument.
func (o *ImageFromDirOptions) Complete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("give exactly one DIR: a dir: layout written by `nixoci copy docker://… dir:DIR`")
	}
	o.Dir = c.Args().First()
	return nil
}

// Validate checks the output and the directory.
func (o *ImageFromDirOptions) Validate() error {
	if err := checkOutput("-o", o.Output); err != nil {
		return err
	}
	return checkDir("image directory", o.Dir)
}

// ImageFromManifestOptions are the flags of `nixoci image-from-manifest`.
type ImageFromManifestOptions struct {
	PlatformOptions
	// Output is the image descriptor written (-o).
	Output string
	// Manifest is the image manifest (or index) file.
	Manifest string
	// Blobs are DIGEST=FILE pairs: the config, every layer, and with an
	// index the chosen manifest.
	Blobs cli.StringSlice
	// BlobFiles is Blobs parsed, filled by Complete.
	BlobFiles map[digest.Digest]string
	// Spec is a JSON file {"manifest": FILE, "blobs": {DIGEST: FILE}} given
	// instead of Manifest and Blobs.
	Spec string
}

// Flags returns the flags of `nixoci image-from-manifest`, filling o.
func (o *ImageFromManifestOptions) Flags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the image descriptor to `IMAGE.json` (required)", Destination: &o.Output},
		&cli.StringFlag{Name: "manifest", Usage: "read the image manifest (or index) from `FILE`", Destination: &o.Manifest},
		&cli.StringSliceFlag{Name: "blob", Usage: "the blob with digest DIGEST is in FILE (`DIGEST=FILE`, repeatable): the config, every layer, and the chosen manifest of an index", Destination: &o.Blobs},
		&cli.StringFlag{Name: "spec", Usage: "read the manifest and blob files from JSON `FILE` {\"manifest\": FILE, \"blobs\": {DIGEST: FILE}} instead", Destination: &o.Spec},
	}, o.flags()...)
}

// Complete refuses arguments (everything is given by flags) and parses
// the --blob pairs.
func (o *ImageFromManifestOptions) Complete(c *cli.Context) (err error) {
	if c.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q: give the manifest with --manifest FILE and each blob with --blob DIGEST=FILE", c.Args().First())
	}
	o.BlobFiles, err = parseBlobs(o.Blobs.Value())
	return err
}

// Validate checks that exactly one input form is used and its files exist.
func (o *ImageFromManifestOptions) Validate() error {
	if err := checkOutput("-o", o.Output); err != nil {
		return err
	}
	switch {
	case o.Spec != "" && (o.Manifest != "" || len(o.BlobFiles) > 0):
		return errors.New("give either --spec FILE or --manifest FILE with --blob DIGEST=FILE, not both")
	case o.Spec != "":
		return checkFile("--spec", o.Spec)
	case o.Manifest == "":
		return errors.New("missing --manifest FILE (or --spec FILE): give the image manifest")
	}
	if err := checkFile("--manifest", o.Manifest); err != nil {
		return err
	}
	for d, file := range o.BlobFiles {
		if err := checkFile("--blob "+string(d), file); err != nil {
			return err
		}
	}
	return nil
}

// parseBlobs parses --blob DIGEST=FILE pairs.
func parseBlobs(pairs []string) (map[digest.Digest]string, error) {
	blobs := map[digest.Digest]string{}
	for _, b := range pairs {
		d, file, ok := strings.Cut(b, "=")
		if !ok || file == "" {
			return nil, fmt.Errorf("--blob %q: write it as DIGEST=FILE (sha256:…=/nix/store/…)", b)
		}
		if err := digest.Digest(d).Validate(); err != nil {
			return nil, fmt.Errorf("--blob %q: bad digest %q: %w", b, d, err)
		}
		blobs[digest.Digest(d)] = file
	}
	return blobs, nil
}
