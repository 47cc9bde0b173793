package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/publish"
	"github.com/nixoci/nixoci/transport/nix"
)

// addInspect registers `nixoci inspect`.
func addInspect(app *cli.App) {
	var o options.InspectOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "inspect",
		Usage:     "print what `nixoci copy` would send: manifest, config and layers with their store paths",
		ArgsUsage: "nix:IMAGE.json",
		Description: `Prints what ` + "`nixoci copy`" + ` would send to the destination given with --dest
(default: a registry): the OCI manifest and config that the nix: transport
serves for it, then each layer with its digests, sizes, history and where its
bytes come from (store paths, a stored tar or a stored blob). For destinations
that store plain tars (docker-daemon, containers-storage, docker-archive) the
layers are served uncompressed. Nothing is streamed, so this is instant.

For an index (` + "`nixoci index`" + `, buildImageIndex) it prints the OCI index and each
image's platform, manifest digest and descriptor; for a destination that
stores one image it prints the image this machine's platform gets.

Example:
   nixoci inspect nix:./result/image.json
   nixoci inspect --dest docker-daemon nix:./result
   nixoci inspect --json nix:image.json | jq .manifest
   nixoci inspect nix:index.json`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			isIndex, err := descriptor.IsIndex(o.Image)
			if err != nil {
				return err
			}
			if isIndex {
				return inspectIndex(c, o)
			}
			img, err := image.Load(c.Context, o.Image)
			if err != nil {
				return err
			}
			return printServed(c, &o, o.Image, img, "")
		},
	})
}

// printServed prints what the nix: source of the descriptor at path serves
// to o's destination: as JSON, or for people after the line header (when
// not empty).
func printServed(c *cli.Context, o *options.InspectOptions, path string, img *image.Image, header string) error {
	ref, err := nix.NewReference(path)
	if err != nil {
		return err
	}
	if ref, err = publish.SourceFor(ref, o.DestTransport); err != nil {
		return err
	}
	manifest, config, err := served(c, ref)
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", path, err)
	}
	if o.JSON {
		return printInspectJSON(c.App.Writer, img, manifest, config)
	}
	if header != "" {
		fmt.Fprintln(c.App.Writer, header)
	}
	return printInspect(c.App.Writer, img, manifest, config)
}

// served returns the manifest and config the nix: source ref serves.
func served(c *cli.Context, ref types.ImageReference) (manifest, config []byte, err error) {
	src, err := ref.NewImageSource(c.Context, nil)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	manifest, _, err = src.GetManifest(c.Context, nil)
	if err != nil {
		return nil, nil, err
	}
	var m struct {
		Config types.BlobInfo `json:"config"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, nil, fmt.Errorf("parsing the served manifest: %w", err)
	}
	rc, _, err := src.GetBlob(c.Context, m.Config, nil)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	config, err = io.ReadAll(rc)
	return manifest, config, err
}

// printInspectJSON prints {name, tag, manifestDigest, manifest, config,
// layers} as one JSON object; layers are the descriptor's.
func printInspectJSON(w io.Writer, img *image.Image, manifest, config []byte) error {
	layers, err := layer.Descriptors(img.Layers)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Name           string             `json:"name,omitempty"`
		Tag            string             `json:"tag,omitempty"`
		ManifestDigest digest.Digest      `json:"manifestDigest"`
		Manifest       json.RawMessage    `json:"manifest"`
		Config         json.RawMessage    `json:"config"`
		Layers         []descriptor.Layer `json:"layers"`
	}{img.Name, img.Tag, digest.FromBytes(manifest), manifest, config, layers})
}

// printInspect prints the image for people.
func printInspect(w io.Writer, img *image.Image, manifest, config []byte) error {
	var b bytes.Buffer
	name := img.Name
	if img.Tag != "" {
		name += ":" + img.Tag
	}
	platform := img.OS + "/" + img.Architecture
	if img.Variant != "" {
		platform += "/" + img.Variant
	}
	fmt.Fprintf(&b, "Image:    %s (%s)\n", name, platform)
	fmt.Fprintf(&b, "Manifest: %s\n", digest.FromBytes(manifest))
	indent(&b, manifest)
	fmt.Fprintf(&b, "Config:   %s\n", digest.FromBytes(config))
	indent(&b, config)
	fmt.Fprintf(&b, "Layers:   %d\n", len(img.Layers))
	for i, l := range img.Layers {
		d := l.(layer.Describer).Descriptor()
		fmt.Fprintf(&b, "  %d. %s  %s, %d bytes\n", i+1, l.Digest(), d.Compressor.Algorithm, l.Size())
		fmt.Fprintf(&b, "     diff_id %s  %d bytes\n", l.DiffID(), l.UncompressedSize())
		if h := d.History; h != nil && h.CreatedBy+h.Author+h.Comment != "" {
			fmt.Fprintf(&b, "     history: created_by %q author %q comment %q\n", h.CreatedBy, h.Author, h.Comment)
		}
		if s, ok := l.(layer.Sourcer); ok {
			fmt.Fprintf(&b, "     from %s\n", s.Source())
		}
		for _, p := range d.Paths {
			fmt.Fprintf(&b, "     %s", p.Path)
			if p.Rewrite != nil {
				fmt.Fprintf(&b, "  (rewritten: %q -> %q)", p.Rewrite.Regex, p.Rewrite.Repl)
			}
			if len(p.Perms) > 0 {
				fmt.Fprintf(&b, "  (%d perms rules)", len(p.Perms))
			}
			b.WriteString("\n")
		}
		for _, p := range d.StorePaths {
			fmt.Fprintf(&b, "     %s\n", p)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// indent writes JSON indented under a heading.
func indent(b *bytes.Buffer, data []byte) {
	var out bytes.Buffer
	if err := json.Indent(&out, data, "    ", "  "); err != nil {
		out.Reset()
		out.Write(data)
	}
	b.WriteString("    ")
	b.Write(out.Bytes())
	b.WriteString("\n")
}
