package descriptor

import (
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Version is the descriptor format version this nixoci writes and reads.
// It is stored in the "nixoci" field of every image and layers document.
const Version = 1

// Nix2ContainerVersion is the nix2container image.json version that is
// accepted as input (see LoadImage).
const Nix2ContainerVersion = 1

// Compression algorithm names, as used in Compressor.Algorithm and on the CLI.
const (
	Gzip = "gzip"
	Zstd = "zstd"
	None = "none"
)

// Image describes a whole image: its config, platform and ordered layers.
// Layers are listed base first.
type Image struct {
	// Nixoci is the format version; always Version when written by nixoci.
	Nixoci int `json:"nixoci"`
	// Name and Tag are informational defaults for copy scripts; the transport
	// does not need them.
	Name string `json:"name,omitempty"`
	Tag  string `json:"tag,omitempty"`
	// Architecture, OS and Variant use Docker/OCI naming (amd64, arm64, linux).
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
	// Created is the image creation time written into the config.
	Created *time.Time `json:"created,omitempty"`
	// Author goes into the config's author field.
	Author string `json:"author,omitempty"`
	// Config is the OCI runtime config (Env, Cmd, Entrypoint, ...).
	Config ocispec.ImageConfig `json:"config"`
	// Layers in application order, base layers first.
	Layers []Layer `json:"layers"`
}

// Layers is the document `nixoci layers` writes: a list of described layers
// that `nixoci image` (or another `nixoci layers --exclude-layers`) consumes.
type Layers struct {
	Nixoci int     `json:"nixoci"`
	Layers []Layer `json:"layers"`
}

// Layer describes one layer. Exactly one of Paths, Tar, Blob or Member says
// where its bytes come from:
//   - Paths: store paths streamed as a deterministic tar (see pkg/tarstream);
//   - Tar: a stored uncompressed tar file, for non-reproducible layers;
//   - Blob: a stored blob served verbatim, already in MediaType's encoding
//     (layers of pulled base images);
//   - Member: a member of a stored tar archive, such as a layer of a
//     docker-archive written by `docker save` or dockerTools.
//
// pkg/layer turns a Layer into a value that serves its bytes; only that
// package looks at which source is set.
type Layer struct {
	// MediaType of the blob named by Digest (OCI layer media types).
	MediaType string `json:"mediaType"`
	// Digest and Size of the blob as it is pushed (compressed unless
	// Compressor.Algorithm is "none", where they equal DiffID and
	// UncompressedSize).
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// DiffID and UncompressedSize describe the uncompressed tar.
	DiffID           digest.Digest `json:"diffID"`
	UncompressedSize int64         `json:"uncompressedSize"`
	// Compressor identifies what produced Digest from the tar, so that a
	// push can tell whether it would reproduce the same bytes.
	Compressor Compressor `json:"compressor"`
	// Paths are the store paths in this layer, in the order given at build time.
	Paths []Path `json:"paths,omitempty"`
	// Tar is the path of a stored uncompressed tar (non-reproducible layers).
	Tar string `json:"tar,omitempty"`
	// StorePaths lists, for a Tar layer made from store paths, the paths
	// it holds at their store location (under /nix/store), sorted. Layers
	// built on it leave them out, and a Nix database registers them.
	// Paths layers say the same through Paths.
	StorePaths []string `json:"storePaths,omitempty"`
	// Blob is the path of a stored blob, served as is.
	Blob string `json:"blob,omitempty"`
	// Member locates the layer in a member of a stored tar archive.
	Member *Member `json:"member,omitempty"`
	// History is this layer's entry in the image config history.
	History *History `json:"history,omitempty"`
}

// Member is where a layer's bytes are in a stored tar archive (a
// docker-archive): the content of one member, read without unpacking the
// archive.
type Member struct {
	// Archive is the absolute path of the archive file.
	Archive string `json:"archive"`
	// Compression is the archive file's own compression: "none" (or
	// empty), "gzip" or "zstd". Offset counts bytes of the decompressed
	// archive, so a compressed archive is decompressed from its start up
	// to the member each time the member is read.
	Compression string `json:"compression,omitempty"`
	// Name is the member's name in the archive, for messages.
	Name string `json:"name"`
	// Offset and Size locate the member's content: Size bytes starting at
	// byte Offset of the (decompressed) archive.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// Blob is true when the member holds the layer's blob, in MediaType's
	// encoding, served verbatim (Size is then the layer's Size). Otherwise
	// it holds the uncompressed tar (Size is the UncompressedSize), and the
	// blob is that tar compressed on the fly as Compressor says.
	Blob bool `json:"blob,omitempty"`
}

// Nix2ContainerLibrary is the Compressor.Library of layers read from a
// nix2container image.json: their digests come from another tar writer and
// pkg/layer describes them anew when it loads them.
const Nix2ContainerLibrary = "nix2container"

// Compressor identifies a compressor exactly enough to know whether it
// reproduces the same bytes: the algorithm, its level, and the library
// (module path and version) that implements it.
type Compressor struct {
	Algorithm string `json:"algorithm"`
	Level     int    `json:"level,omitempty"`
	Library   string `json:"library,omitempty"`
}

// History is a layer's history entry.
type History struct {
	// Created is the entry's own time; when nil the image's Created is used.
	Created   *time.Time `json:"created,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
	Author    string     `json:"author,omitempty"`
	Comment   string     `json:"comment,omitempty"`
}

// Path is one store path in a layer.
type Path struct {
	// Path is the absolute path on the build machine, usually /nix/store/….
	Path string `json:"path"`
	// Rewrite relocates the path's entries inside the image.
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// Perms override mode and ownership of matching entries.
	Perms []Perm `json:"perms,omitempty"`
	// Digest is the sha256 of this path's share of the layer's tar stream:
	// the bytes of the entries that came from this path, in stream order.
	Digest digest.Digest `json:"digest,omitempty"`
	// Ignore is a regexp matched against each entry's path in the image
	// (after Rewrite); matching entries, and whole directories, are left out.
	Ignore string `json:"ignore,omitempty"`
	// Fingerprints is base64 of one 4-byte big-endian CRC-32C per entry
	// of this path, in stream order, over that entry's header and content
	// bytes. `nixoci verify` uses it to name the first file that differs.
	Fingerprints string `json:"fingerprints,omitempty"`
	// Mtime is the modification time, in seconds since
	// 1970-01-01T00:00:00Z, of this path's entries and of the parent
	// directories they imply. Nil: 1 (1970-01-01T00:00:01Z).
	Mtime *int64 `json:"mtime,omitempty"`
	// KeepDirlinks keeps this path's symlinks to directories as symlinks
	// where another path of the layer has a directory at the same place
	// (an error then) or such a symlink (the later path's replaces it).
	// By default such a symlink is merged as the directory it points to,
	// as `rsync -k` copies it.
	KeepDirlinks bool `json:"keepDirlinks,omitempty"`
}

// Rewrite replaces the first match of Regex in an entry's source path with
// Repl (Go regexp syntax, $1 expansion) to give its path in the image.
// A result of "" or "/" is the image root.
type Rewrite struct {
	Regex string `json:"regex"`
	Repl  string `json:"repl"`
}

// Perm sets mode and ownership of the entries whose source path matches Regex.
// Nil fields are left as they are (mode canonical, owner root).
type Perm struct {
	Regex string `json:"regex"`
	Mode  string `json:"mode,omitempty"` // octal, e.g. "0700"
	// OrMode is OR-ed into the mode after Mode is applied (octal).
	OrMode string  `json:"orMode,omitempty"`
	UID    *int    `json:"uid,omitempty"`
	GID    *int    `json:"gid,omitempty"`
	Uname  *string `json:"uname,omitempty"`
	Gname  *string `json:"gname,omitempty"`
}
