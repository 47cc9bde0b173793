package options

import (
	"errors"
	"strings"

	"github.com/urfave/cli/v2"
)

// IndexOptions are the flags and arguments of `nixoci index`.
type IndexOptions struct {
	// Output is the index descriptor written (-o).
	Output string
	// Name and Tag are the index's default name and tag for copy scripts.
	Name, Tag string
	// Images are the image descriptors, one per platform (the arguments,
	// nix:IMAGE.json or a path, a directory holding image.json included).
	Images []string
}

// Flags returns the flags of `nixoci index`, filling o.
func (o *IndexOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the index descriptor to `INDEX.json` (required)", Destination: &o.Output},
		&cli.StringFlag{Name: "name", Usage: "index `NAME` used by copy scripts, lower-cased (required)", Destination: &o.Name},
		&cli.StringFlag{Name: "tag", Usage: "index `TAG` used by copy scripts", Value: "latest", Destination: &o.Tag},
	}
}

// Complete takes the image descriptor arguments.
func (o *IndexOptions) Complete(c *cli.Context) error {
	o.Images = nil
	for _, a := range c.Args().Slice() {
		p, err := DescriptorPath(a)
		if err != nil {
			return err
		}
		o.Images = append(o.Images, p)
	}
	return nil
}

// Validate checks the flag values and that every image descriptor exists.
func (o *IndexOptions) Validate() error {
	if err := checkOutput("-o", o.Output); err != nil {
		return err
	}
	if strings.TrimSpace(o.Name) == "" {
		return errors.New("missing --name NAME: name the index")
	}
	if len(o.Images) == 0 {
		return errors.New("no images: give the IMAGE.json of each platform (written by `nixoci image` or buildImage)")
	}
	for _, img := range o.Images {
		if err := checkDescriptor(img); err != nil {
			return err
		}
	}
	return nil
}
