package options

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/image"
)

// ImageOptions are the flags and arguments of `nixoci image`.
type ImageOptions struct {
	// Output is the image descriptor written (-o).
	Output string
	// Name and Tag are the image's default name and tag for copy scripts.
	Name, Tag string
	// Config is a JSON file holding an OCI image config (Env, Cmd, Entrypoint, …).
	Config string
	// Arch, OS and Variant are the platform, in Docker/OCI naming.
	Arch, OS, Variant string
	// Created is an RFC 3339 time, or "now"; empty keeps the fixed time
	// 1970-01-01T00:00:01Z.
	Created string
	// FromImage is the base image whose layers come first: an image
	// descriptor (nixoci's or nix2container's), or a docker-archive file.
	FromImage string
	// FromImageName and FromImageTag choose the base image of a
	// docker-archive that holds several, as dockerTools' fromImageName and
	// fromImageTag: with both, the image tagged NAME:TAG; else the first.
	FromImageName, FromImageTag string
	// FromImageCompression is the blob compression (gzip, zstd or none) of
	// a docker-archive base's layers, which the archive stores as plain tars.
	FromImageCompression string
	// Layers are layers descriptors written by `nixoci layers`, base first (the arguments).
	Layers []string
}

// Flags returns the flags of `nixoci image`, filling o.
func (o *ImageOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the image descriptor to `IMAGE.json` (required)", Destination: &o.Output},
		&cli.StringFlag{Name: "name", Usage: "image `NAME` used by copy scripts, lower-cased (required)", Destination: &o.Name},
		&cli.StringFlag{Name: "tag", Usage: "image `TAG` used by copy scripts", Value: "latest", Destination: &o.Tag},
		&cli.StringFlag{Name: "config", Usage: "take the OCI image config (Env, Cmd, Entrypoint, …) from JSON `FILE`", Destination: &o.Config},
		&cli.StringFlag{Name: "arch", Usage: "image architecture `ARCH` in Docker/OCI naming (amd64, arm64; x86_64 and aarch64 are accepted); default: the base image's, else this machine's", Destination: &o.Arch},
		&cli.StringFlag{Name: "os", Usage: "image `OS`; default: the base image's, else linux", Destination: &o.OS},
		&cli.StringFlag{Name: "variant", Usage: "architecture `VARIANT` (e.g. v8 for arm64)", Destination: &o.Variant},
		&cli.StringFlag{Name: "created", Usage: "creation `TIME` (RFC 3339) or \"now\"; default 1970-01-01T00:00:01Z", Destination: &o.Created},
		&cli.StringFlag{Name: "from-image", Usage: "put the layers of base image `BASE` first: an image descriptor (nixoci's or nix2container's) or a docker-archive (plain, gzip or zstd), whose layers are served from the archive in place", Destination: &o.FromImage},
		&cli.StringFlag{Name: "from-image-name", Usage: "with --from-image-tag, use the image named `NAME` of a --from-image docker-archive that holds several (default: the first)", Destination: &o.FromImageName},
		&cli.StringFlag{Name: "from-image-tag", Usage: "with --from-image-name, the `TAG` of that image", Destination: &o.FromImageTag},
		&cli.StringFlag{Name: "from-image-compression", Usage: "compress the layers of a --from-image docker-archive with `ALG` (gzip, zstd or none) when pushed; they are hashed once now", Value: "gzip", Destination: &o.FromImageCompression},
	}
}

// Validate checks the flag values and that every named file exists.
func (o *ImageOptions) Validate() error {
	if err := checkOutput("-o", o.Output); err != nil {
		return err
	}
	if strings.TrimSpace(o.Name) == "" {
		return errors.New("missing --name NAME: name the image")
	}
	if len(o.Layers) == 0 && o.FromImage == "" {
		return errors.New("no layers: give LAYERS.json arguments written by `nixoci layers` (or --from-image)")
	}
	if err := checkCreated(o.Created); err != nil {
		return err
	}
	if err := checkFile("--config", o.Config); err != nil {
		return err
	}
	if err := checkFile("--from-image", o.FromImage); err != nil {
		return err
	}
	if o.FromImageCompression != "" {
		if err := checkOneOf("--from-image-compression", o.FromImageCompression, ArchiveCompressions); err != nil {
			return err
		}
	}
	for _, l := range o.Layers {
		if err := checkFile("layers descriptor", l); err != nil {
			return err
		}
	}
	return nil
}

// checkCreated checks a --created value: empty, "now" or an RFC 3339 time
// (image.ParseCreated's rules).
func checkCreated(created string) error {
	if _, err := image.ParseCreated(created, nil); err != nil {
		return fmt.Errorf("--created: %w", err)
	}
	return nil
}

// LoadConfig reads and parses the --config file (nil when unset).
func (o *ImageOptions) LoadConfig() (*image.ParsedConfig, error) {
	if o.Config == "" {
		return nil, nil
	}
	data, err := os.ReadFile(o.Config)
	if err != nil {
		return nil, fmt.Errorf("reading --config: %w", err)
	}
	return image.ParseConfig(o.Config, data)
}

// Complete takes the layers descriptor arguments.
func (o *ImageOptions) Complete(c *cli.Context) error {
	o.Layers = c.Args().Slice()
	return nil
}
