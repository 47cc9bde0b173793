package descriptor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
)

// ImageFileName is the file looked for when a descriptor path is a directory
// (for example a `result` symlink to a Nix output directory).
const ImageFileName = "image.json"

// ErrUnknownVersion is wrapped by the error returned for a document whose
// version this nixoci does not read.
var ErrUnknownVersion = errors.New("unknown descriptor version")

// ResolvePath returns the descriptor file for path: path itself, or
// path/image.json when path is a directory.
func ResolvePath(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("reading image descriptor %s: %w", path, err)
	}
	if fi.IsDir() {
		return filepath.Join(path, ImageFileName), nil
	}
	return path, nil
}

// header holds the fields that tell the formats and versions apart.
type header struct {
	Nixoci  *int            `json:"nixoci"`
	Version *int            `json:"version"`
	Config  json.RawMessage `json:"image-config"`
	// Architecture, OS and ImageConfig are set in image descriptors and
	// never in layers documents.
	Architecture *string         `json:"architecture"`
	OS           *string         `json:"os"`
	ImageConfig  json.RawMessage `json:"config"`
	// Manifests is set in index documents only.
	Manifests json.RawMessage `json:"manifests"`
}

// isLayers reports whether a nixoci document is a layers document: it has
// none of an image descriptor's or an index's own fields.
func (h header) isLayers() bool {
	return h.Architecture == nil && h.OS == nil && h.ImageConfig == nil && !h.isIndex()
}

// isIndex reports whether a nixoci document is an index document.
func (h header) isIndex() bool {
	return h.Manifests != nil
}

// LoadImage reads an image descriptor: nixoci's own (version Version) or
// nix2container's image.json (version Nix2ContainerVersion), whose layers
// come back with Compressor.Library Nix2ContainerLibrary.
func LoadImage(path string) (*Image, error) {
	file, err := ResolvePath(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading image descriptor: %w", err)
	}
	return ParseImage(file, data)
}

// ParseImage parses an image descriptor; name is used in error messages.
func ParseImage(name string, data []byte) (*Image, error) {
	h, err := parseHeader(name, data)
	if err != nil {
		return nil, err
	}
	if h.Nixoci == nil {
		return parseNix2Container(name, data, h)
	}
	if h.isLayers() {
		return nil, fmt.Errorf("%s is a layers descriptor (written by `nixoci layers` or buildLayer), not an image descriptor: make an image of it with `nixoci image` (or buildImage's layers argument) and use that", name)
	}
	if h.isIndex() {
		return nil, fmt.Errorf("%s is an index descriptor (written by `nixoci index` or buildImageIndex), not an image descriptor: give one of the images it lists (`nixoci inspect` shows them); `nixoci copy` takes the index itself", name)
	}
	var img Image
	if err := strictUnmarshal(data, &img); err != nil {
		return nil, fmt.Errorf("parsing image descriptor %s: %w", name, err)
	}
	if err := img.Validate(); err != nil {
		return nil, fmt.Errorf("image descriptor %s: %w", name, err)
	}
	return &img, nil
}

// LoadLayers reads a layers document written by `nixoci layers`.
func LoadLayers(path string) (*Layers, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading layers descriptor: %w", err)
	}
	h, err := parseHeader(path, data)
	if err != nil {
		return nil, err
	}
	if h.Nixoci == nil {
		return nil, fmt.Errorf("layers descriptor %s: no \"nixoci\" version field; write it with `nixoci layers`", path)
	}
	if h.isIndex() {
		return nil, fmt.Errorf("%s is an index descriptor, not a layers descriptor: give the layers documents its images were made of", path)
	}
	if !h.isLayers() {
		return nil, fmt.Errorf("%s is an image descriptor, not a layers descriptor: use it as a base image (a from-image), or give the layers documents it was made of", path)
	}
	var ls Layers
	if err := strictUnmarshal(data, &ls); err != nil {
		return nil, fmt.Errorf("parsing layers descriptor %s: %w", path, err)
	}
	for i := range ls.Layers {
		if err := ls.Layers[i].Validate(); err != nil {
			return nil, fmt.Errorf("layers descriptor %s: layer %d: %w", path, i, err)
		}
	}
	return &ls, nil
}

func parseHeader(name string, data []byte) (header, error) {
	var h header
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("parsing descriptor %s: %w (is it a nixoci descriptor JSON file?)", name, err)
	}
	switch {
	case h.Nixoci != nil:
		if *h.Nixoci != Version {
			return h, fmt.Errorf("descriptor %s has version %d, but this nixoci reads version %d: rebuild it with this nixoci or use a matching nixoci: %w", name, *h.Nixoci, Version, ErrUnknownVersion)
		}
	case h.Version != nil && h.Config != nil:
		if *h.Version != Nix2ContainerVersion {
			return h, fmt.Errorf("descriptor %s is a nix2container image.json of version %d, but nixoci reads nix2container version %d (and nixoci version %d): %w", name, *h.Version, Nix2ContainerVersion, Version, ErrUnknownVersion)
		}
	default:
		return h, fmt.Errorf("descriptor %s has no version: expected a \"nixoci\": %d field (or a nix2container image.json with \"version\": %d): %w", name, Version, Nix2ContainerVersion, ErrUnknownVersion)
	}
	return h, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Validate checks the fields every consumer relies on.
func (img *Image) Validate() error {
	if img.Architecture == "" || img.OS == "" {
		return errors.New("architecture and os must be set")
	}
	for i := range img.Layers {
		if err := img.Layers[i].Validate(); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return nil
}

// Validate checks what a layer's bytes hash to: its digests, sizes and
// media type. Which source serves them (paths, tar, blob or member) is
// checked by pkg/layer, the one place that tells the sources apart.
func (l *Layer) Validate() error {
	for _, d := range []digest.Digest{l.Digest, l.DiffID} {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("invalid digest %q: %w", d, err)
		}
	}
	if l.Size < 0 || l.UncompressedSize < 0 {
		return fmt.Errorf("negative size (size %d, uncompressedSize %d): sizes are byte counts", l.Size, l.UncompressedSize)
	}
	if l.MediaType != "" {
		alg, ok := LayerMediaType(l.MediaType)
		if !ok {
			return fmt.Errorf("media type %q is not an OCI or Docker layer media type (such as %s)", l.MediaType, ocispec.MediaTypeImageLayerGzip)
		}
		if l.Compressor.Algorithm != "" && l.Compressor.Algorithm != alg {
			return fmt.Errorf("media type %s is %s, but the compressor says %s", l.MediaType, alg, l.Compressor.Algorithm)
		}
	}
	return nil
}

// Check checks a member source against the layer it serves.
func (m *Member) Check(l *Layer) error {
	if !filepath.IsAbs(m.Archive) {
		return fmt.Errorf("member %q: archive %q is not an absolute path", m.Name, m.Archive)
	}
	switch m.Compression {
	case "", None, Gzip, Zstd:
	default:
		return fmt.Errorf("member %q of archive %s: unknown archive compression %q (expected none, gzip or zstd)", m.Name, m.Archive, m.Compression)
	}
	if m.Offset < 0 || m.Size < 0 {
		return fmt.Errorf("member %q of archive %s: negative offset %d or size %d", m.Name, m.Archive, m.Offset, m.Size)
	}
	want, what := l.UncompressedSize, "uncompressedSize"
	if m.Blob {
		want, what = l.Size, "size"
	}
	if m.Size != want {
		return fmt.Errorf("member %q of archive %s has %d bytes, but the layer's %s is %d", m.Name, m.Archive, m.Size, what, want)
	}
	return nil
}

// Write writes v (an *Image, *Layers or *Index) to path as indented JSON, through a
// temporary file renamed into place, so a failed write leaves nothing behind.
func Write(path string, v any) error {
	data, err := Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing descriptor %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing descriptor %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing descriptor %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing descriptor %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing descriptor %s: %w", path, err)
	}
	return nil
}

// Marshal encodes v deterministically: the same value always gives the same bytes.
func Marshal(v any) ([]byte, error) {
	switch d := v.(type) {
	case *Image:
		d.Nixoci = Version
	case *Layers:
		d.Nixoci = Version
	case *Index:
		d.Nixoci = Version
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding descriptor: %w", err)
	}
	return buf.Bytes(), nil
}

// nix2container's image.json, version 1 (field names are its format's).
type n2cImage struct {
	Version     int                 `json:"version"`
	ImageConfig ocispec.ImageConfig `json:"image-config"`
	Layers      []n2cLayer          `json:"layers"`
	Arch        string              `json:"arch"`
	Created     *time.Time          `json:"created"`
}

type n2cLayer struct {
	Digest    string          `json:"digest"`
	Size      int64           `json:"size"`
	DiffIDs   string          `json:"diff_ids"`
	Paths     []n2cPath       `json:"paths"`
	MediaType string          `json:"mediatype"`
	LayerPath string          `json:"layer-path"`
	History   ocispec.History `json:"History"`
}

type n2cPath struct {
	Path    string `json:"path"`
	Options *struct {
		Rewrite struct {
			Regex string `json:"regex"`
			Repl  string `json:"repl"`
		} `json:"rewrite"`
		Perms []struct {
			Regex  string `json:"regex"`
			Mode   string `json:"mode"`
			OrMode string `json:"orMode"`
			UID    int    `json:"uid"`
			GID    int    `json:"gid"`
			Uname  string `json:"uname"`
			Gname  string `json:"gname"`
		} `json:"perms"`
		IgnoreDestination string `json:"ignoreDestination"`
	} `json:"options"`
}

func parseNix2Container(name string, data []byte, _ header) (*Image, error) {
	var n n2cImage
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("parsing nix2container image %s: %w", name, err)
	}
	img := &Image{
		Nixoci:       Version,
		Architecture: n.Arch,
		OS:           "linux",
		Created:      n.Created,
		Config:       n.ImageConfig,
	}
	if img.Architecture == "" {
		img.Architecture = "amd64"
	}
	for i, nl := range n.Layers {
		l := Layer{
			MediaType:        nl.MediaType,
			Digest:           digest.Digest(nl.Digest),
			Size:             nl.Size,
			DiffID:           digest.Digest(nl.DiffIDs),
			UncompressedSize: 0, // unknown until rehashed
			Compressor:       Compressor{Algorithm: AlgorithmOf(nl.MediaType), Library: Nix2ContainerLibrary},
		}
		if h := nl.History; h.CreatedBy != "" || h.Author != "" || h.Comment != "" {
			l.History = &History{CreatedBy: h.CreatedBy, Author: h.Author, Comment: h.Comment}
		}
		switch {
		case nl.LayerPath != "" && l.Compressor.Algorithm == None:
			l.Tar = nl.LayerPath
		case nl.LayerPath != "":
			l.Blob = nl.LayerPath
		}
		for _, np := range nl.Paths {
			p := Path{Path: np.Path}
			if o := np.Options; o != nil {
				if o.Rewrite.Regex != "" {
					p.Rewrite = &Rewrite{Regex: o.Rewrite.Regex, Repl: o.Rewrite.Repl}
				}
				p.Ignore = o.IgnoreDestination
				for _, np := range o.Perms {
					uid, gid, uname, gname := np.UID, np.GID, np.Uname, np.Gname
					p.Perms = append(p.Perms, Perm{Regex: np.Regex, Mode: np.Mode, OrMode: np.OrMode, UID: &uid, GID: &gid, Uname: &uname, Gname: &gname})
				}
			}
			l.Paths = append(l.Paths, p)
		}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("nix2container image %s: layer %d: %w", name, i, err)
		}
		img.Layers = append(img.Layers, l)
	}
	return img, nil
}

// MediaType returns the OCI layer media type for a compression algorithm.
func MediaType(algorithm string) string {
	switch algorithm {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	default:
		return ocispec.MediaTypeImageLayer
	}
}

// AlgorithmOf returns the compression algorithm of an OCI or Docker layer
// media type; an unknown media type gives None.
func AlgorithmOf(mediaType string) string {
	alg, _ := LayerMediaType(mediaType)
	return alg
}

// LayerMediaType returns the compression algorithm of an OCI or Docker
// layer media type, and false when mediaType is not a layer media type.
func LayerMediaType(mediaType string) (algorithm string, ok bool) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer,
		manifest.DockerV2SchemaLayerMediaTypeUncompressed,
		manifest.DockerV2Schema2ForeignLayerMediaType,
		// Non-distributable layers are deprecated, but pulled images have them.
		"application/vnd.oci.image.layer.nondistributable.v1.tar":
		return None, true
	case ocispec.MediaTypeImageLayerGzip,
		manifest.DockerV2Schema2LayerMediaType,
		manifest.DockerV2Schema2ForeignLayerMediaTypeGzip,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip":
		return Gzip, true
	case ocispec.MediaTypeImageLayerZstd,
		manifest.DockerV2SchemaLayerMediaTypeZstd,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return Zstd, true
	}
	return None, false
}

// OCILayerMediaType maps Docker schema 2 layer media types to the OCI ones
// with the same bytes; anything else is returned unchanged.
func OCILayerMediaType(mediaType string) string {
	switch mediaType {
	case manifest.DockerV2Schema2LayerMediaType:
		return ocispec.MediaTypeImageLayerGzip
	case manifest.DockerV2SchemaLayerMediaTypeUncompressed:
		return ocispec.MediaTypeImageLayer
	case manifest.DockerV2SchemaLayerMediaTypeZstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return mediaType
}
