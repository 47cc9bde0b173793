package dockerload

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// ArchiveImage is one image of a docker-archive written by WriteArchive.
type ArchiveImage struct {
	// Config is the image config JSON; its sha256 is the image ID.
	Config []byte
	// RepoTags are the names `docker load` gives the image ("name:tag");
	// none loads it untagged.
	RepoTags []string
	// Layers are the image's layers, base first.
	Layers []ArchiveLayer
}

// ArchiveLayer is one layer of an ArchiveImage.
type ArchiveLayer struct {
	// DiffID is the layer's uncompressed digest: it names the layer's file
	// (<hex>/layer.tar), and what Open streams must hash to it.
	DiffID digest.Digest
	// Size is the length of what Open streams.
	Size int64
	// Open streams the layer's tar; the caller closes it.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// WriteArchive writes images as one docker-archive to w, streamed: each
// image's config and each distinct layer once, then manifest.json listing
// the images in order. `docker load` reads it. Every entry has a fixed
// time and mode, so the same images give the same bytes. Each layer is
// checked against its DiffID as it is copied; on an error the archive is
// left unfinished (no manifest.json), which `docker load` refuses.
func WriteArchive(ctx context.Context, w io.Writer, images []ArchiveImage) error {
	aw := newArchiveWriter(w)
	for i, img := range images {
		configName, err := aw.config(img.Config)
		if err != nil {
			return err
		}
		files := make([]string, 0, len(img.Layers))
		for j, l := range img.Layers {
			file := layerFile(l.DiffID)
			files = append(files, file)
			open := func(ctx context.Context) (io.ReadCloser, int64, error) {
				rc, err := l.Open(ctx)
				return rc, l.Size, err
			}
			if _, _, err := aw.layer(ctx, file, l.DiffID, open); err != nil {
				return fmt.Errorf("image %d, layer %d: %w", i, j, err)
			}
		}
		aw.image(configName, img.RepoTags, files)
	}
	return aw.close()
}

// archiveManifest is one entry of a docker-archive's manifest.json.
type archiveManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// epoch is the modification time of every archive entry.
var epoch = time.Unix(0, 0).UTC()

// archiveWriter writes a docker-archive entry by entry: configs and layer
// files once each, and manifest.json at the end.
type archiveWriter struct {
	tw      *tar.Writer
	written map[string]bool
	entries []archiveManifest
}

func newArchiveWriter(w io.Writer) *archiveWriter {
	return &archiveWriter{tw: tar.NewWriter(w), written: map[string]bool{}}
}

// layerFile is the archive file of a layer.
func layerFile(diffID digest.Digest) string { return diffID.Encoded() + "/layer.tar" }

// config writes an image config as <hex>.json, once, and returns its name.
func (a *archiveWriter) config(data []byte) (string, error) {
	name := digest.FromBytes(data).Encoded() + ".json"
	if a.written[name] {
		return name, nil
	}
	a.written[name] = true
	return name, writeFile(a.tw, name, data)
}

// layer writes a layer file (and its directory) unless it is already in
// the archive, checking what open streams against want. It returns the
// bytes written and whether it wrote anything.
func (a *archiveWriter) layer(ctx context.Context, file string, want digest.Digest, open func(context.Context) (io.ReadCloser, int64, error)) (int64, bool, error) {
	if a.written[file] {
		return 0, false, nil
	}
	a.written[file] = true
	dir := file[:len(file)-len("/layer.tar")]
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return 0, false, fmt.Errorf("writing archive entry %s: %w", dir, err)
	}
	rc, size, err := open(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("reading layer %s: %w", want, err)
	}
	defer rc.Close()
	if size < 0 {
		return 0, false, fmt.Errorf("reading layer %s: the source does not say its size", want)
	}
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: file, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return 0, false, fmt.Errorf("writing archive entry %s: %w", file, err)
	}
	verifier := want.Verifier()
	n, err := io.Copy(a.tw, io.TeeReader(rc, verifier))
	if err != nil {
		return n, true, fmt.Errorf("streaming layer %s: %w", want, err)
	}
	if n != size {
		return n, true, fmt.Errorf("streaming layer %s: got %d bytes, want %d", want, n, size)
	}
	if !verifier.Verified() {
		return n, true, fmt.Errorf("streaming layer %s: content does not match its digest", want)
	}
	return n, true, nil
}

// image adds an entry to manifest.json.
func (a *archiveWriter) image(configName string, repoTags, layers []string) {
	if repoTags == nil {
		repoTags = []string{}
	}
	a.entries = append(a.entries, archiveManifest{Config: configName, RepoTags: repoTags, Layers: layers})
}

// close writes manifest.json and ends the archive.
func (a *archiveWriter) close() error {
	data, err := json.Marshal(a.entries)
	if err != nil {
		return fmt.Errorf("encoding manifest.json: %w", err)
	}
	if err := writeFile(a.tw, "manifest.json", data); err != nil {
		return err
	}
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("finishing the archive: %w", err)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("writing archive entry %s: %w", name, err)
	}
	if _, err := io.Copy(tw, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("writing archive entry %s: %w", name, err)
	}
	return nil
}
