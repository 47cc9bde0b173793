package options

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/docker/reference"
	"golang.org/x/term"
)

// SaveOptions are the flags and arguments of `nixoci save`.
type SaveOptions struct {
	// Output is the docker-archive file written (-o); empty writes to
	// standard output.
	Output string
	// Compression of the whole archive: none, gzip or zstd.
	Compression string
	// Tags are NAME:TAG names for the one image given (repeatable).
	Tags cli.StringSlice
	// Images are the images to save (the arguments): nix:IMAGE.json, a
	// directory holding image.json, or a docker-archive file.
	Images []string
	// stdoutTerminal is set when standard output is a terminal.
	stdoutTerminal bool
}

// ArchiveCompressions are the values --compression of save accepts.
var ArchiveCompressions = []string{"none", "gzip", "zstd"}

// Flags returns the flags of `nixoci save`, filling o.
func (o *SaveOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the docker-archive to `FILE` (default: standard output)", Destination: &o.Output},
		&cli.StringFlag{Name: "compression", Usage: "compress the whole archive with `ALG`: none, gzip or zstd (docker load reads all three)", Value: "none", Destination: &o.Compression},
		&cli.StringSliceFlag{Name: "tag", Usage: "load the image as `NAME:TAG` (repeatable; only with one image; default: the descriptor's name and tag)", Destination: &o.Tags},
	}
}

// Complete takes the image arguments.
func (o *SaveOptions) Complete(c *cli.Context) error {
	for _, arg := range c.Args().Slice() {
		p, err := DescriptorPath(arg)
		if err != nil {
			return err
		}
		o.Images = append(o.Images, p)
	}
	o.stdoutTerminal = term.IsTerminal(int(os.Stdout.Fd()))
	return nil
}

// Validate checks the images, the tags and where the archive goes.
func (o *SaveOptions) Validate() error {
	if len(o.Images) == 0 {
		return errors.New("no images: give nix:IMAGE.json or docker-archive files to save")
	}
	for _, img := range o.Images {
		if _, err := os.Stat(img); err != nil {
			return fmt.Errorf("image %s: %w", img, err)
		}
	}
	if err := checkOneOf("--compression", o.Compression, ArchiveCompressions); err != nil {
		return err
	}
	if err := checkTags(o.Tags.Value()); err != nil {
		return err
	}
	if len(o.Tags.Value()) > 0 && len(o.Images) != 1 {
		return fmt.Errorf("--tag names one image, but %d are given", len(o.Images))
	}
	if o.Output == "" {
		if o.stdoutTerminal {
			return errors.New("standard output is a terminal: give -o FILE, or pipe the archive into `docker load`")
		}
		return nil
	}
	return checkOutput("-o", o.Output)
}

// checkTags checks NAME:TAG references.
func checkTags(tags []string) error {
	for _, t := range tags {
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			return fmt.Errorf("--tag %q: %w: write it as NAME:TAG", t, err)
		}
		if _, ok := named.(reference.NamedTagged); !ok {
			return fmt.Errorf("--tag %q has no tag: write it as NAME:TAG", t)
		}
	}
	return nil
}
