package nix

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/directory/explicitfilepath"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/internal/logs"
)

func init() {
	transports.Register(Transport)
}

// Transport is the nix: ImageTransport. Its references name an image
// descriptor file, or a directory holding image.json (such as a nix-build
// `result` link), or an index descriptor (`nixoci index`,
// buildImageIndex), which is served as an OCI image index of its images:
// GetManifest with an instance digest gives each image's manifest.
//
// Reference syntax, after "nix:":
//
//	PATH                 layers as the descriptor describes them (compressed)
//	PATH:OPTION[,OPTION] with options; the only one is "uncompressed"
//	PATH:                no options; needed when PATH itself contains ':'
//
// With "uncompressed", layers are served as plain tars whose digests are the
// diff_ids; destinations that store layers uncompressed (docker-daemon:,
// containers-storage:, docker-archive:) then get no compression to undo.
var Transport = nixTransport{}

// Name is the transport's name, the prefix of its references.
const transportName = "nix"

// Option names as written in a reference string.
const optUncompressed = "uncompressed"

type nixTransport struct{}

var _ types.ImageTransport = nixTransport{}

// Name returns "nix".
func (nixTransport) Name() string {
	return transportName
}

// ParseReference parses a reference without the "nix:" prefix.
func (nixTransport) ParseReference(s string) (types.ImageReference, error) {
	return ParseReference(s)
}

// ValidatePolicyConfigurationScope accepts absolute, clean paths other than
// "/": the descriptor file and the directories above it (see
// PolicyConfigurationNamespaces).
func (nixTransport) ValidatePolicyConfigurationScope(scope string) error {
	switch {
	case !strings.HasPrefix(scope, "/"):
		return fmt.Errorf("policy scope %q: must be an absolute path: %w", scope, ErrInvalidReference)
	case scope == "/":
		return fmt.Errorf(`policy scope "/": use the default scope "" instead: %w`, ErrInvalidReference)
	case filepath.Clean(scope) != scope:
		return fmt.Errorf("policy scope %q: not canonical, use %q: %w", scope, filepath.Clean(scope), ErrInvalidReference)
	}
	return nil
}

// Option changes how a reference serves its image.
type Option func(*nixOptions)

// nixOptions holds a reference's options; defaultOptions gives their defaults.
type nixOptions struct {
	// uncompressed serves layers as plain tars (digest = diff_id).
	uncompressed bool
	// log receives the source's notes, such as a fallback to serving
	// plain tars.
	log logrus.FieldLogger
}

// defaultOptions is the one place option defaults live.
func defaultOptions() nixOptions {
	return nixOptions{uncompressed: false, log: logs.Discard()}
}

// WithLogger sends the image source's notes (a fallback to serving plain
// tars, say) to l. By default they are discarded.
func WithLogger(l logrus.FieldLogger) Option {
	return func(o *nixOptions) { o.log = logs.Or(l) }
}

// Uncompressed serves every layer as its plain tar, with the diff_id as its
// digest, instead of the compressed blob the descriptor describes.
func Uncompressed() Option {
	return func(o *nixOptions) { o.uncompressed = true }
}

// names returns the options in reference-string form.
func (o nixOptions) names() []string {
	var out []string
	if o.uncompressed {
		out = append(out, optUncompressed)
	}
	return out
}

// nixReference is a nix: ImageReference.
type nixReference struct {
	// path is as the user gave it (maybe relative, maybe a `result` link);
	// it is what gets opened.
	path string
	// resolved is the absolute path with symlinks resolved when it was
	// made, or the cleaned absolute path if it does not exist yet; it is
	// the policy identity.
	resolved string
	opts     nixOptions
}

var _ types.ImageReference = nixReference{}

// ParseReference parses a reference string without the "nix:" prefix (see
// Transport for the syntax). opts are applied after the string's options.
func ParseReference(s string, opts ...Option) (types.ImageReference, error) {
	path := s
	var o []Option
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		path = s[:i]
		for _, name := range strings.Split(s[i+1:], ",") {
			switch name {
			case "":
			case optUncompressed:
				o = append(o, Uncompressed())
			default:
				return nil, fmt.Errorf("nix:%s: unknown option %q (known: %s; end a path that contains ':' with ':'): %w", s, name, optUncompressed, ErrInvalidReference)
			}
		}
	}
	return NewReference(path, append(o, opts...)...)
}

// NewReference returns a nix: reference to the image descriptor at path (a
// file, or a directory holding image.json). The descriptor is read when an
// image source is opened, not here.
func NewReference(path string, opts ...Option) (types.ImageReference, error) {
	if path == "" {
		return nil, fmt.Errorf("nix: reference needs a descriptor path, as in nix:./result: %w", ErrInvalidReference)
	}
	resolved, err := resolve(path)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return nixReference{path: path, resolved: resolved, opts: o}, nil
}

// resolve returns the absolute, symlink-free form of path, falling back to
// the cleaned absolute path when path or its parent does not exist yet.
func resolve(path string) (string, error) {
	resolved, err := explicitfilepath.ResolvePathToFullyExplicit(path)
	if err == nil {
		return resolved, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("resolving nix: reference %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolving nix: reference %s: %w", path, err)
	}
	return abs, nil
}

// Transport returns the nix: transport.
func (ref nixReference) Transport() types.ImageTransport {
	return Transport
}

// StringWithinTransport returns the path with its options, in a form
// ParseReference turns back into an equal reference.
func (ref nixReference) StringWithinTransport() string {
	names := ref.opts.names()
	if len(names) == 0 && !strings.Contains(ref.path, ":") {
		return ref.path
	}
	return ref.path + ":" + strings.Join(names, ",")
}

// DockerReference returns nil: a descriptor path names no registry image.
func (ref nixReference) DockerReference() reference.Named {
	return nil
}

// PolicyConfigurationIdentity returns the resolved descriptor path. The
// options are not part of it: both forms carry the same image.
func (ref nixReference) PolicyConfigurationIdentity() string {
	return ref.resolved
}

// PolicyConfigurationNamespaces returns the directories above the resolved
// path, nearest first, without "/".
func (ref nixReference) PolicyConfigurationNamespaces() []string {
	var out []string
	for p := filepath.Dir(ref.resolved); p != "/" && p != "."; p = filepath.Dir(p) {
		out = append(out, p)
	}
	return out
}

// NewImage returns the image; the caller must Close it.
func (ref nixReference) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	img, err := image.FromSource(ctx, sys, src)
	if err != nil {
		src.Close()
		return nil, err
	}
	return img, nil
}

// NewImageSource reads the descriptor and returns a source serving it; the
// caller must Close it.
func (ref nixReference) NewImageSource(ctx context.Context, _ *types.SystemContext) (types.ImageSource, error) {
	return newImageSource(ctx, ref)
}

// NewImageDestination fails: nix: images are built by Nix, not written.
func (ref nixReference) NewImageDestination(context.Context, *types.SystemContext) (types.ImageDestination, error) {
	return nil, fmt.Errorf("%w: build images with nixoci's Nix functions, then copy from nix: to the destination", ErrSourceOnly)
}

// DeleteImage fails: the descriptor belongs to the Nix store.
func (ref nixReference) DeleteImage(context.Context, *types.SystemContext) error {
	return fmt.Errorf("deleting nix:%s: %w: remove the store path with nix-store --delete instead", ref.StringWithinTransport(), ErrSourceOnly)
}

// DescriptorPath returns the descriptor path of a nix: reference, as given
// (before symlinks are resolved), and false for a reference of another
// transport.
func DescriptorPath(ref types.ImageReference) (string, bool) {
	r, ok := ref.(nixReference)
	if !ok {
		return "", false
	}
	return r.path, true
}
