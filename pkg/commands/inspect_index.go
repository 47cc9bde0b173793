package commands

import (
	"bytes"
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/manifest"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/publish"
	"github.com/nixoci/nixoci/transport/nix"
)

// inspectIndex is `nixoci inspect` of an index descriptor: the OCI index
// and its images, or, for a destination that stores one image, that
// image as `nixoci inspect` of it prints it.
func inspectIndex(c *cli.Context, o options.InspectOptions) error {
	idx, err := image.LoadIndex(c.Context, o.Image)
	if err != nil {
		return err
	}
	ref, err := nix.NewReference(o.Image)
	if err != nil {
		return err
	}
	if ref, err = publish.SourceFor(ref, o.DestTransport); err != nil {
		return err
	}
	src, err := ref.NewImageSource(c.Context, nil)
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", o.Image, err)
	}
	defer src.Close()
	top, mime, err := src.GetManifest(c.Context, nil)
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", o.Image, err)
	}
	var listed ocispec.Index
	if err := json.Unmarshal(top, &listed); err != nil || len(listed.Manifests) != len(idx.Images) {
		return fmt.Errorf("inspecting %s: the served index does not list its %d images (%v)", o.Image, len(idx.Images), err)
	}
	if !publish.CopiesWholeIndex(o.DestTransport) {
		list, err := manifest.ListFromBlob(top, mime)
		if err != nil {
			return fmt.Errorf("inspecting %s: %w", o.Image, err)
		}
		chosen, err := list.ChooseInstance(nil)
		if err != nil {
			return fmt.Errorf("inspecting %s: %s gets the image for this machine, and %w", o.Image, o.Dest, err)
		}
		for i, e := range listed.Manifests {
			if e.Digest != chosen {
				continue
			}
			img := idx.Images[i]
			header := fmt.Sprintf("Index:    %s: %s gets the image for %s, %s", indexName(idx), o.Dest, descriptor.PlatformString(image.Platform(img.Image)), img.Path)
			return printServed(c, &o, img.Path, img.Image, header)
		}
		return fmt.Errorf("inspecting %s: the chosen image %s is not in the index", o.Image, chosen)
	}

	type entry struct {
		Image          string           `json:"image"`
		Platform       ocispec.Platform `json:"platform"`
		ManifestDigest digest.Digest    `json:"manifestDigest"`
		Manifest       json.RawMessage  `json:"manifest"`
	}
	var entries []entry
	for i, e := range listed.Manifests {
		m, _, err := src.GetManifest(c.Context, &e.Digest)
		if err != nil {
			return fmt.Errorf("inspecting %s: %w", o.Image, err)
		}
		entries = append(entries, entry{Image: idx.Images[i].Path, Platform: image.Platform(idx.Images[i].Image), ManifestDigest: e.Digest, Manifest: m})
	}
	if o.JSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(struct {
			Name           string          `json:"name,omitempty"`
			Tag            string          `json:"tag,omitempty"`
			ManifestDigest digest.Digest   `json:"manifestDigest"`
			Manifest       json.RawMessage `json:"manifest"`
			Images         []entry         `json:"images"`
		}{idx.Name, idx.Tag, digest.FromBytes(top), top, entries})
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Index:    %s (%d images)\n", indexName(idx), len(entries))
	fmt.Fprintf(&b, "Manifest: %s\n", digest.FromBytes(top))
	indent(&b, top)
	for i, e := range entries {
		fmt.Fprintf(&b, "  %d. %s  manifest %s, %d bytes\n", i+1, descriptor.PlatformString(e.Platform), e.ManifestDigest, len(e.Manifest))
		fmt.Fprintf(&b, "     %s (%d layers)\n", e.Image, len(idx.Images[i].Image.Layers))
	}
	_, err = c.App.Writer.Write(b.Bytes())
	return err
}

// indexName is name:tag of an index.
func indexName(idx *image.Index) string {
	if idx.Tag == "" {
		return idx.Name
	}
	return idx.Name + ":" + idx.Tag
}
