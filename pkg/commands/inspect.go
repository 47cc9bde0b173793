package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// addInspect registers `nixoci inspect`.
func addInspect(app *cli.App) {
	var o options.InspectOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "inspect",
		Usage:     "print an image descriptor's manifest, config and layers with their store paths",
		ArgsUsage: "nix:IMAGE.json",
		Description: `Prints what ` + "`nixoci copy`" + ` would send: the OCI manifest and config, then
each layer with its digests, sizes, history and store paths. Nothing is
streamed, so this is instant.

Example:
   nixoci inspect nix:./result/image.json
   nixoci inspect --json nix:image.json | jq .manifest`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			img, err := descriptor.LoadImage(o.Image)
			if err != nil {
				return err
			}
			if img.Foreign {
				if err := layer.Rehash(c.Context, img); err != nil {
					return fmt.Errorf("recomputing digests of nix2container image %s: %w", o.Image, err)
				}
				img.Foreign = false
			}
			manifest, config, err := image.Manifest(img, false)
			if err != nil {
				return fmt.Errorf("making manifest of %s: %w", o.Image, err)
			}
			if o.JSON {
				return printInspectJSON(c.App.Writer, img, manifest, config)
			}
			return printInspect(c.App.Writer, img, manifest, config)
		},
	})
}

// printInspectJSON prints {manifest, config, layers} as one JSON object.
func printInspectJSON(w io.Writer, img *descriptor.Image, manifest, config []byte) error {
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
	}{img.Name, img.Tag, digest.FromBytes(manifest), manifest, config, img.Layers})
}

// printInspect prints the image for people.
func printInspect(w io.Writer, img *descriptor.Image, manifest, config []byte) error {
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
		fmt.Fprintf(&b, "  %d. %s  %s, %d bytes\n", i+1, l.Digest, l.Compressor.Algorithm, l.Size)
		fmt.Fprintf(&b, "     diff_id %s  %d bytes\n", l.DiffID, l.UncompressedSize)
		if h := l.History; h != nil && h.CreatedBy+h.Author+h.Comment != "" {
			fmt.Fprintf(&b, "     history: created_by %q author %q comment %q\n", h.CreatedBy, h.Author, h.Comment)
		}
		switch {
		case l.Tar != "":
			fmt.Fprintf(&b, "     tar  %s\n", l.Tar)
		case l.Blob != "":
			fmt.Fprintf(&b, "     blob %s\n", l.Blob)
		}
		for _, p := range l.Paths {
			fmt.Fprintf(&b, "     %s", p.Path)
			if p.Rewrite != nil {
				fmt.Fprintf(&b, "  (rewritten: %q -> %q)", p.Rewrite.Regex, p.Rewrite.Repl)
			}
			if len(p.Perms) > 0 {
				fmt.Fprintf(&b, "  (%d perms rules)", len(p.Perms))
			}
			b.WriteString("\n")
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
