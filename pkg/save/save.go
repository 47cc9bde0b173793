package save

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/nixoci/nixoci/pkg/archive"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/dockerload"
	"github.com/nixoci/nixoci/pkg/image"
)

// Image is one image to save and the names it loads as.
type Image struct {
	Image *image.Image
	// RepoTags are "name:tag" references; none loads the image untagged.
	RepoTags []string
}

// Options configure Write. The zero value writes a plain tar.
type Options struct {
	// Compression of the whole archive: "none" (or ""), "gzip" or "zstd";
	// `docker load` reads all three.
	Compression string
}

// Write writes images to w as one docker-archive (see
// dockerload.WriteArchive): configs, each distinct layer's tar once, and
// manifest.json. The layers are streamed uncompressed, checked against
// their diff_ids; the same images give the same bytes.
func Write(ctx context.Context, w io.Writer, images []Image, opts Options) error {
	alg := opts.Compression
	if alg == "" {
		alg = descriptor.None
	}
	c, err := compress.New(alg)
	if err != nil {
		return fmt.Errorf("docker-archive compression: %w", err)
	}
	entries := make([]dockerload.ArchiveImage, 0, len(images))
	for i, img := range images {
		cfg, err := image.Config(img.Image)
		if err != nil {
			return fmt.Errorf("image %d (%s): %w", i, img.Image.Name, err)
		}
		e := dockerload.ArchiveImage{Config: cfg, RepoTags: img.RepoTags}
		for _, l := range img.Image.Layers {
			e.Layers = append(e.Layers, dockerload.ArchiveLayer{DiffID: l.DiffID(), Size: l.UncompressedSize(), Open: l.Uncompressed})
		}
		entries = append(entries, e)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	cw, err := c.NewWriter(bw)
	if err != nil {
		return err
	}
	if err := dockerload.WriteArchive(ctx, cw, entries); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("compressing the docker-archive: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the docker-archive: %w", err)
	}
	return nil
}

// Read reads the images at path to save: an image descriptor (nixoci's or
// nix2container's, or a directory holding image.json) gives one image, a
// docker-archive every image it holds. repoTags, when given, name the one
// image path must then hold; otherwise a descriptor's image loads as its
// recorded name and tag ("latest" when it records a name but no tag), and
// an archive's images keep their RepoTags.
func Read(ctx context.Context, path string, repoTags []string) ([]Image, error) {
	isArchive, err := image.IsArchive(path)
	if err != nil {
		return nil, err
	}
	if !isArchive {
		img, err := image.Load(ctx, path)
		if err != nil {
			return nil, err
		}
		tags := repoTags
		if len(tags) == 0 && img.Name != "" {
			tag := img.Tag
			if tag == "" {
				tag = "latest"
			}
			tags = []string{img.Name + ":" + tag}
		}
		return []Image{{Image: img, RepoTags: tags}}, nil
	}
	a, err := archive.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	if len(repoTags) > 0 && len(a.Images) != 1 {
		return nil, fmt.Errorf("docker-archive %s holds %d images (%s): names can be given only for an archive of one image", path, len(a.Images), a.Tags())
	}
	out := make([]Image, 0, len(a.Images))
	for i := range a.Images {
		// The layers are only re-streamed as tars: no compression.
		img, err := image.FromArchive(ctx, a, i, descriptor.None)
		if err != nil {
			return nil, err
		}
		tags := a.Images[i].RepoTags
		if len(repoTags) > 0 {
			tags = repoTags
		}
		out = append(out, Image{Image: img, RepoTags: tags})
	}
	return out, nil
}
