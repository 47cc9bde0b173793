package publish

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
)

// ErrBadOption is wrapped by the errors for option values Copy cannot use.
var ErrBadOption = errors.New("invalid copy option")

// Options configure Copy. Fields mirror skopeo copy's flags of the same
// meaning; the zero value (see withDefaults) copies with containers/image's
// defaults, accepts any signature and reports nothing.
type Options struct {
	// SrcTLSVerify and DestTLSVerify, when set, require (true) or skip
	// (false) TLS verification for registries and the docker daemon on that
	// side. Skipping also allows plain HTTP. Nil uses registries.conf.
	SrcTLSVerify  *bool
	DestTLSVerify *bool
	// SrcCreds and DestCreds are registry credentials "USER:PASSWORD".
	SrcCreds  string
	DestCreds string
	// AuthFile is the registry auth file (containers-auth.json format) for
	// both sides; empty uses the default locations.
	AuthFile string
	// DestCompressFormat is the algorithm used for layers the copy
	// compresses: gzip, zstd or zstd:chunked. Empty is gzip.
	DestCompressFormat string
	// ImageParallelCopies is how many layers are copied at once; 0 is
	// containers/image's default.
	ImageParallelCopies uint
	// AdditionalTags are extra name:tag references written into a
	// docker-archive: destination.
	AdditionalTags []string
	// PolicyPath is a signature policy file (policy.json). Empty accepts
	// every image.
	PolicyPath string
	// Progress receives the report; nil discards it. It is written from
	// several goroutines; Copy serializes the writes unless it is an
	// *os.File (which must stay one for progress bars).
	Progress io.Writer
	// TTY asks for progress bars. containers/image draws them only when
	// Progress is a terminal *os.File. Without TTY the report is one line
	// per blob: "done" with its size, or "skipped: already exists".
	TTY bool
	// BlobInfoCacheDir is where the blob-info cache lives; empty is the
	// default location. Tests give a fresh empty directory.
	BlobInfoCacheDir string
	// Debug also writes containers/image's own report lines (signature
	// steps, manifest writing) to Progress when TTY is false.
	Debug bool
}

// withDefaults is the one place option defaults are filled in.
func (o Options) withDefaults() Options {
	switch o.Progress.(type) {
	case nil:
		o.Progress = io.Discard
	case *os.File:
	default:
		o.Progress = &lockedWriter{w: o.Progress}
	}
	return o
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// systemContexts turns the options into containers/image's per-side settings.
func (o Options) systemContexts() (src, dest *types.SystemContext, err error) {
	src = &types.SystemContext{AuthFilePath: o.AuthFile, BlobInfoCacheDir: o.BlobInfoCacheDir}
	dest = &types.SystemContext{AuthFilePath: o.AuthFile, BlobInfoCacheDir: o.BlobInfoCacheDir}
	setTLS(src, o.SrcTLSVerify)
	setTLS(dest, o.DestTLSVerify)
	if src.DockerAuthConfig, err = parseCreds("source", o.SrcCreds); err != nil {
		return nil, nil, err
	}
	if dest.DockerAuthConfig, err = parseCreds("destination", o.DestCreds); err != nil {
		return nil, nil, err
	}
	if o.DestCompressFormat != "" {
		alg, err := compression.AlgorithmByName(o.DestCompressFormat)
		if err != nil {
			return nil, nil, fmt.Errorf("destination compression %q: %w: use gzip, zstd or zstd:chunked", o.DestCompressFormat, ErrBadOption)
		}
		dest.CompressionFormat = &alg
	}
	for _, t := range o.AdditionalTags {
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			return nil, nil, fmt.Errorf("additional tag %q: %w: %w", t, ErrBadOption, err)
		}
		tagged, ok := named.(reference.NamedTagged)
		if !ok {
			return nil, nil, fmt.Errorf("additional tag %q: %w: write it as NAME:TAG", t, ErrBadOption)
		}
		dest.DockerArchiveAdditionalTags = append(dest.DockerArchiveAdditionalTags, tagged)
	}
	return src, dest, nil
}

func setTLS(sys *types.SystemContext, verify *bool) {
	if verify == nil {
		return
	}
	sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*verify)
	sys.DockerDaemonInsecureSkipTLSVerify = !*verify
	sys.OCIInsecureSkipTLSVerify = !*verify
}

// parseCreds parses "USER:PASSWORD"; empty means none.
func parseCreds(side, creds string) (*types.DockerAuthConfig, error) {
	if creds == "" {
		return nil, nil
	}
	user, pass, ok := strings.Cut(creds, ":")
	if !ok || user == "" {
		return nil, fmt.Errorf("%s credentials: %w: write them as USER:PASSWORD", side, ErrBadOption)
	}
	return &types.DockerAuthConfig{Username: user, Password: pass}, nil
}
