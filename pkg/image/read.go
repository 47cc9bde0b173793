package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixoci/nixoci/pkg/archive"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// ReadOptions say how Read takes an image out of a docker-archive; they do
// not matter for descriptors.
type ReadOptions struct {
	// Name and Tag choose one image of a docker-archive that holds several,
	// by dockerTools' rule for fromImageName and fromImageTag (see
	// archive.Select): with both given, the image tagged name:tag; else
	// the first image.
	Name, Tag string
	// Compression is the blob compression ("gzip", "zstd" or "none"; ""
	// is gzip) of the archive's layers that are stored as plain tars:
	// their blobs are compressed by this nixoci, once at read time to
	// compute the digests and again whenever a destination asks for the
	// compressed blob. "none" skips that work, and the blob is the tar.
	Compression string
}

// Read reads the image at path from any file nixoci takes as an image: an
// image descriptor (nixoci's, or nix2container's image.json from its
// buildImage or pullImage), a directory holding image.json (a Nix result),
// or a docker-archive tarball, plain, gzip or zstd (from `docker save`,
// dockerTools, skopeo or `nixoci save`). An archive's layers are served
// from its members in place, never unpacked.
func Read(ctx context.Context, path string, opts ReadOptions) (*Image, error) {
	isArchive, err := sniff(path)
	if err != nil {
		return nil, err
	}
	if !isArchive {
		// A descriptor holds one image: Name and Tag choose only within
		// archives, as in dockerTools.
		return Load(ctx, path)
	}
	a, err := archive.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	i, err := a.Select(opts.Name, opts.Tag)
	if err != nil {
		return nil, err
	}
	return FromArchive(ctx, a, i, opts.Compression)
}

// IsArchive tells whether path is a docker-archive rather than an image
// descriptor, from its first bytes.
func IsArchive(path string) (bool, error) { return sniff(path) }

func sniff(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("reading image %s: %w", path, err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, descriptor.ImageFileName)); err != nil {
			return false, fmt.Errorf("image %s is a directory without %s: expected an image descriptor (nixoci's or nix2container's), a directory holding %s (a Nix result), or a docker-archive file", path, descriptor.ImageFileName, descriptor.ImageFileName)
		}
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("reading image %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return false, fmt.Errorf("reading image %s: %w", path, err)
	}
	if n == 0 {
		return false, fmt.Errorf("image %s is an empty file: expected an image descriptor or a docker-archive", path)
	}
	return archive.LooksLikeArchive(head[:n]), nil
}

// FromArchive returns image i of a docker-archive, its layers described
// from the archive's members (see archive.Archive.Layers).
func FromArchive(ctx context.Context, a *archive.Archive, i int, compression string) (*Image, error) {
	cfg, err := a.Config(i)
	if err != nil {
		return nil, err
	}
	layers, err := a.Layers(ctx, i, compression)
	if err != nil {
		return nil, err
	}
	img := &Image{
		Architecture: cfg.Architecture,
		OS:           cfg.OS,
		Variant:      cfg.Variant,
		Author:       cfg.Author,
		Config:       cfg.Config,
		Layers:       layers,
	}
	if tags := a.Images[i].RepoTags; len(tags) > 0 {
		img.Name, img.Tag = SplitTag(tags[0])
	}
	if cfg.Created != nil {
		t := cfg.Created.UTC()
		img.Created = &t
	}
	if err := check(img); err != nil {
		return nil, fmt.Errorf("docker-archive %s, image %d: %w", a.Path, i, err)
	}
	return img, nil
}

// SplitTag splits "name:tag" at the tag's colon (not a registry port's);
// without a tag, the tag is "".
func SplitTag(ref string) (name, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i+1:], "/") {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}
