package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// ErrNoSuchImage is wrapped by Select's error when no image has the
// requested name and tag.
var ErrNoSuchImage = errors.New("no such image in the docker-archive")

// Select returns the index of the image that name and tag choose, by
// dockerTools' rule for fromImageName and fromImageTag: when both are given,
// the image whose RepoTags hold "name:tag" (compared as written, then as
// Docker normalises names, so "busybox:1" also finds
// "docker.io/library/busybox:1"); otherwise the first image.
func (a *Archive) Select(name, tag string) (int, error) {
	if name == "" || tag == "" {
		return 0, nil
	}
	want := name + ":" + tag
	for i, img := range a.Images {
		for _, t := range img.RepoTags {
			if t == want {
				return i, nil
			}
		}
	}
	if norm := normalized(want); norm != "" {
		for i, img := range a.Images {
			for _, t := range img.RepoTags {
				if normalized(t) == norm {
					return i, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("docker-archive %s: %w: none is tagged %s (it holds %s)", a.Path, ErrNoSuchImage, want, a.Tags())
}

// normalized is a reference in Docker's full form, or "" when it is not one.
func normalized(s string) string {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return ""
	}
	return n.String()
}

// Config parses the image config of image i: the platform, the runtime
// config, its diff_ids and history. Docker's own fields that OCI lacks
// (Healthcheck, Shell, …) are dropped.
func (a *Archive) Config(i int) (ocispec.Image, error) {
	var c ocispec.Image
	if i < 0 || i >= len(a.Images) {
		return c, fmt.Errorf("docker-archive %s has %d images, not %d", a.Path, len(a.Images), i+1)
	}
	img := a.Images[i]
	if err := json.Unmarshal(img.Config, &c); err != nil {
		return c, fmt.Errorf("docker-archive %s: parsing image config %s: %w", a.Path, img.ConfigName, err)
	}
	if len(c.RootFS.DiffIDs) != len(img.Layers) {
		return c, fmt.Errorf("docker-archive %s: image %d lists %d layers in manifest.json but its config %s has %d diff_ids", a.Path, i, len(img.Layers), img.ConfigName, len(c.RootFS.DiffIDs))
	}
	return c, nil
}

// Layers describes the layers of image i, base first, as layers served
// from the archive's members in place. Each member is read once: a member
// holding a plain tar is hashed and compressed with compression ("none":
// the blob is the tar), one holding a compressed blob is described as it
// is. Each layer's diff_id must be the one in the image's config.
//
// A plain archive's members are read in parallel; a compressed archive is
// decompressed once, in order.
func (a *Archive) Layers(ctx context.Context, i int, compression string) ([]layer.Layer, error) {
	cfg, err := a.Config(i)
	if err != nil {
		return nil, err
	}
	img := a.Images[i]
	// Each distinct member once, in the order of the archive.
	var names []string
	seen := map[string]bool{}
	for _, n := range img.Layers {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	described := map[string]layer.Layer{}
	if a.Compression == descriptor.None {
		ls := make([]layer.Layer, len(names))
		err = parallel.Do(ctx, len(names), func(ctx context.Context, k int) error {
			m, _ := a.Member(names[k])
			f, err := os.Open(a.Path)
			if err != nil {
				return fmt.Errorf("reading docker-archive %s: %w", a.Path, err)
			}
			defer f.Close()
			l, err := layer.DescribeMember(ctx, io.NewSectionReader(f, m.Offset, m.Size), m, compression, nil)
			if err != nil {
				return err
			}
			ls[k] = l
			return nil
		})
		for k, n := range names {
			described[n] = ls[k]
		}
	} else {
		err = a.describeInOrder(ctx, seen, compression, described)
	}
	if err != nil {
		return nil, err
	}
	hist := layerHistory(cfg)
	out := make([]layer.Layer, len(img.Layers))
	for k, n := range img.Layers {
		l := described[n]
		if l == nil {
			return nil, fmt.Errorf("docker-archive %s: layer %s was not found while reading the archive: the archive changed while it was read", a.Path, n)
		}
		if want := cfg.RootFS.DiffIDs[k]; l.DiffID() != want {
			return nil, fmt.Errorf("docker-archive %s: layer %d (member %s) is the tar %s, but the image config %s says diff_id %s: the archive is damaged; save or pull the image again", a.Path, k, n, l.DiffID(), img.ConfigName, want)
		}
		d := l.(layer.Describer).Descriptor()
		d.History = hist[k]
		if out[k], err = layer.FromDescriptor(d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// describeInOrder decompresses the archive once and describes each member
// in want as the stream reaches it.
func (a *Archive) describeInOrder(ctx context.Context, want map[string]bool, compression string, out map[string]layer.Layer) error {
	f, err := os.Open(a.Path)
	if err != nil {
		return fmt.Errorf("reading docker-archive %s: %w", a.Path, err)
	}
	defer f.Close()
	zr, err := compress.NewReader(a.Compression, bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("reading docker-archive %s: %w", a.Path, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for len(out) < len(want) {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading docker-archive %s: %w", a.Path, err)
		}
		name := cleanName(h.Name)
		if h.Typeflag != tar.TypeReg || !want[name] {
			continue
		}
		m, _ := a.Member(name)
		if m.Size != h.Size {
			return fmt.Errorf("docker-archive %s: member %s changed while it was read", a.Path, name)
		}
		l, err := layer.DescribeMember(ctx, tr, m, compression, nil)
		if err != nil {
			return err
		}
		out[name] = l
	}
	return nil
}

// layerHistory returns the history entry of each layer: the config's
// entries that made a layer, in order, when there is one per layer.
func layerHistory(c ocispec.Image) []*descriptor.History {
	out := make([]*descriptor.History, len(c.RootFS.DiffIDs))
	var made []ocispec.History
	for _, h := range c.History {
		if !h.EmptyLayer {
			made = append(made, h)
		}
	}
	if len(made) != len(out) {
		return out
	}
	for i, h := range made {
		if h.CreatedBy == "" && h.Author == "" && h.Comment == "" && h.Created == nil {
			continue
		}
		hist := &descriptor.History{CreatedBy: h.CreatedBy, Author: h.Author, Comment: h.Comment}
		if h.Created != nil {
			t := h.Created.UTC()
			hist.Created = &t
		}
		out[i] = hist
	}
	return out
}
