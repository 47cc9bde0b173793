package nixbuild

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/flatten"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/save"
)

// saveAttrs are the attributes of buildLayeredImage's tarball and of
// mergeImages (nix/archive.nix).
type saveAttrs struct {
	// Images are the images to save, in order: each a descriptor or a
	// docker-archive, with the names it loads as (none: its own).
	Images []struct {
		Path string   `json:"path"`
		Tags []string `json:"tags"`
	} `json:"images"`
	// Compression of the whole archive: "none", "gzip" or "zstd".
	Compression string `json:"compression"`
}

// saveArchive writes $out, one docker-archive of the images, as `nixoci
// save` does.
func saveArchive(ctx context.Context, a *Attrs, _ string) error {
	var sa saveAttrs
	out, err := a.DecodeOut(&sa)
	if err != nil {
		return err
	}
	var images []save.Image
	for _, img := range sa.Images {
		imgs, err := save.Read(ctx, img.Path, img.Tags)
		if err != nil {
			return err
		}
		images = append(images, imgs...)
	}
	return writeOutput(out, func(w io.Writer) error {
		return save.Write(ctx, w, images, save.Options{Compression: sa.Compression})
	})
}

// exportAttrs are exportImage's attributes (nix/archive.nix).
type exportAttrs struct {
	FromImage     string  `json:"fromImage"`
	FromImageName *string `json:"fromImageName"`
	FromImageTag  *string `json:"fromImageTag"`
}

// exportImage writes $out, the image's file system as one flattened tar,
// as `nixoci export` does.
func exportImage(ctx context.Context, a *Attrs, _ string) error {
	var ea exportAttrs
	out, err := a.DecodeOut(&ea)
	if err != nil {
		return err
	}
	opts := image.ReadOptions{Compression: descriptor.None}
	if ea.FromImageName != nil {
		opts.Name = *ea.FromImageName
	}
	if ea.FromImageTag != nil {
		opts.Tag = *ea.FromImageTag
	}
	img, err := image.Read(ctx, ea.FromImage, opts)
	if err != nil {
		return fmt.Errorf("fromImage: %w", err)
	}
	layers := make([]flatten.Layer, len(img.Layers))
	for i, l := range img.Layers {
		layers[i] = l
	}
	return writeOutput(out, func(w io.Writer) error {
		return flatten.Write(ctx, w, layers)
	})
}

// executableAttrs are the attributes of streamLayeredImage's script.
type executableAttrs struct {
	Text string `json:"text"`
}

// writeExecutable writes $out itself as an executable script: a result
// that runs as `$(nix-build …)`.
func writeExecutable(a *Attrs) error {
	var ea executableAttrs
	out, err := a.DecodeOut(&ea)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(ea.Text), 0o555); err != nil {
		return fmt.Errorf("writing script %s: %w", out, err)
	}
	return nil
}

// writeOutput writes an output file directly: Nix discards the outputs of
// a failed build, so no temporary file is needed (and the store directory
// is no place for one).
func writeOutput(out string, write func(io.Writer) error) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("creating output %s: %w", out, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing output %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing output %s: %w", out, err)
	}
	return nil
}
