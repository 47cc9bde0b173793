package publish

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/internal/logs"
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
	// SrcCreds and DestCreds are the registry credentials of each side;
	// nil uses the auth file (AuthFile, or the default ones).
	SrcCreds  *Credentials
	DestCreds *Credentials
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
	// RetryTimes is how many times a copy from or to a registry that
	// failed in a way a new attempt can mend (a registry answering 5xx or
	// 429, a connection reset or closed early, a stall) is tried again, as
	// skopeo's --retry-times. Blobs that arrived in an earlier attempt are
	// not sent again. Nil is DefaultRetryTimes; 0 never retries. Copies
	// between local transports are never retried.
	RetryTimes *int
	// RetryDelay is the wait before each retry. Zero waits 1s, 2s, 4s, …
	// (doubling), as skopeo's --retry-delay.
	RetryDelay time.Duration
	// StallTimeout ends an attempt during which, for this long, no blob
	// started or finished and fewer than StallRate bytes a second of blob
	// data moved: a stalled or trickling connection then fails (and is
	// retried) in bounded time. It watches copies with a registry on
	// either side, except into docker-daemon: and containers-storage:,
	// which may work for long after the last byte. Nil is
	// DefaultStallTimeout; 0 turns it off.
	StallTimeout *time.Duration
	// MountFrom are repositories of the destination registry ("team/base"
	// or "HOST/team/base") that may hold layers of the image: a layer the
	// destination repository lacks is mounted from the first of them that
	// has it (a cross-repository blob mount) instead of being uploaded.
	// Only for nix: sources and registry destinations; it needs the SQLite blob-info cache
	// (a build with cgo).
	MountFrom []string
	// Log receives retries, cleanup problems and details; nil discards
	// them.
	Log Logger
}

// Credentials are a registry user name and password.
type Credentials struct {
	Username, Password string
}

const (
	// DefaultRetryTimes is RetryTimes when it is not set.
	DefaultRetryTimes = 3
	// DefaultStallTimeout is StallTimeout when it is not set.
	DefaultStallTimeout = 5 * time.Minute
	// StallRate is the transfer rate, in bytes a second, under which a
	// copy counts as stalled (see StallTimeout).
	StallRate = 1024
)

// withDefaults is the one place option defaults are filled in.
func (o Options) withDefaults() Options {
	if o.RetryTimes == nil {
		n := DefaultRetryTimes
		o.RetryTimes = &n
	}
	if o.StallTimeout == nil {
		d := DefaultStallTimeout
		o.StallTimeout = &d
	}
	if o.Log == nil {
		o.Log = logs.Discard()
	}
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
	src.DockerAuthConfig = o.SrcCreds.authConfig()
	dest.DockerAuthConfig = o.DestCreds.authConfig()
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

// authConfig is c for containers/image; nil when c is nil.
func (c *Credentials) authConfig() *types.DockerAuthConfig {
	if c == nil {
		return nil
	}
	return &types.DockerAuthConfig{Username: c.Username, Password: c.Password}
}
