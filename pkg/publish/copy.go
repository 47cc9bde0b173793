package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	// Every transport containers/image has, on either side.
	_ "go.podman.io/image/v5/transports/alltransports"

	"github.com/nixoci/nixoci/pkg/dockerload"
	nix "github.com/nixoci/nixoci/transport"
)

// uncompressedDestinations store layers as plain tars; a nix: image is
// served to them uncompressed so nothing is compressed only to be
// decompressed again.
var uncompressedDestinations = map[string]bool{
	"docker-daemon":      true,
	"containers-storage": true,
	"docker-archive":     true,
}

// Copy copies the image src to dest, both TRANSPORT:REFERENCE strings of any
// containers/image transport (nix: included, as a source). A nix: source is
// served uncompressed to destinations that store plain tars, and loaded into
// docker-daemon: by pkg/dockerload, which skips the layers the daemon has.
// Before any blob moves, the destination is asked whether it holds the
// manifest a nix: source would write (see skipPresent); if it does, the
// copy only tags it. A nix: source reaches registries, oci: and dir: with
// exactly the manifest it serves (no layer is compressed on the way unless
// Options.DestCompressFormat asks), and a nix: index reaches them whole;
// other destinations get the image of this machine's platform.
// Copies to dir:, oci:, docker-archive: and oci-archive: are all-or-nothing,
// and copies into one oci: layout from several processes keep every tag
// (see stage). A copy that fails in a way a new attempt can mend is
// retried (Options.RetryTimes), and one that stalls is ended
// (Options.StallTimeout). No manifest is written when one of its blobs
// failed. An image with more layers than the destination holds (the
// Docker daemon, a docker-archive, containers-storage with overlay) is
// refused before anything is copied (see checkLayerCount).
func Copy(ctx context.Context, src, dest string, opts Options) error {
	opts = opts.withDefaults()
	srcRef, err := parseRef("source", src)
	if err != nil {
		return err
	}
	destRef, err := parseRef("destination", dest)
	if err != nil {
		return err
	}
	srcSys, destSys, err := opts.systemContexts()
	if err != nil {
		return err
	}
	mounts, err := mountRepos(opts.MountFrom, destRef)
	if err != nil {
		return err
	}
	policy, err := policyContext(opts.PolicyPath)
	if err != nil {
		return err
	}
	defer policy.Destroy()

	if err := checkLayerCount(ctx, srcRef, destRef, srcSys, opts.Log); err != nil {
		return fmt.Errorf("destination %s: %w", refString(destRef), err)
	}
	if srcRef, err = SourceFor(srcRef, destRef.Transport().Name()); err != nil {
		return err
	}
	// A nix: source is opened once, here: what it serves is known before
	// any blob moves, and copy.Image reads the same open source.
	var s *served
	if isNix(srcRef) {
		if s, err = openServed(ctx, srcRef, srcSys, takesLists(destRef.Transport().Name())); err != nil {
			return explain(fmt.Errorf("initializing source %s: %w", refString(srcRef), err), srcRef, destRef)
		}
		defer s.src.Close()
		srcRef = openedRef{ImageReference: srcRef, src: s.src}
	}
	if s != nil && destRef.Transport().Name() == "docker-daemon" {
		return load(ctx, s, srcRef, destRef, srcSys, policy, opts)
	}
	c := &copier{opts: opts, src: srcRef, dest: destRef, srcSys: srcSys, destSys: destSys, policy: policy, served: s}
	if c.skipPresent(ctx, s) {
		return nil
	}
	if len(mounts) > 0 && s == nil {
		return fmt.Errorf("mounting blobs into %s: %w: mounts are tried for nix: sources, not %s", refString(destRef), ErrBadOption, refString(srcRef))
	}
	if len(mounts) > 0 {
		dir, err := mountCache(s.layerCompressors(), mounts)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		sys := *destSys
		sys.BlobInfoCacheDir = dir
		c.destSys = &sys
	}
	retries := 0
	if remote(srcRef, destRef) {
		retries = *opts.RetryTimes
		if watched(destRef) {
			c.stallTimeout = *opts.StallTimeout
		}
	}
	if err := retry(ctx, retries, opts.RetryDelay, opts.Log, c.attempt); err != nil {
		return explain(err, srcRef, destRef)
	}
	return nil
}

// isNix tells whether ref is a nix: reference.
func isNix(ref types.ImageReference) bool {
	return ref.Transport().Name() == nix.Transport.Name()
}

// remote tells whether a registry is on a side of the copy: only then can
// a new attempt mend a failure, or a connection stall.
func remote(src, dest types.ImageReference) bool {
	return src.Transport().Name() == docker.Transport.Name() || dest.Transport().Name() == docker.Transport.Name()
}

// watched tells whether the stall watchdog applies to a remote copy to
// dest: not to destinations that may work for long after the last byte
// (the Docker daemon loads the archive after receiving it;
// containers-storage reports no progress for partial pulls).
func watched(dest types.ImageReference) bool {
	switch dest.Transport().Name() {
	case "docker-daemon", "containers-storage":
		return false
	}
	return true
}

// copier is one copy with containers/image, tried once per attempt.
type copier struct {
	opts            Options
	src, dest       types.ImageReference
	srcSys, destSys *types.SystemContext
	policy          *signature.PolicyContext
	// stallTimeout is the watchdog's timeout; 0 turns it off.
	stallTimeout time.Duration
	// served is what a nix: source serves; nil for other sources.
	served *served
}

// attempt copies once: it stages the destination, runs copy.Image with the
// progress events going to the line report and the stall watchdog, and
// puts the result in place, or removes it on failure.
func (c *copier) attempt(ctx context.Context) error {
	st, err := stage(c.dest, c.opts.Log)
	if err != nil {
		return err
	}
	destSys := *c.destSys
	if st.sharedBlobDir != "" {
		destSys.OCISharedBlobDirPath = st.sharedBlobDir
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	copyOpts := &copy.Options{
		SourceCtx:            c.srcSys,
		DestinationCtx:       &destSys,
		MaxParallelDownloads: c.opts.ImageParallelCopies,
		ProgressInterval:     progressInterval,
	}
	if c.served != nil && c.opts.DestCompressFormat == "" && takesLists(c.dest.Transport().Name()) {
		// The destination gets the manifest `nixoci inspect` shows:
		// containers/image would otherwise gzip uncompressed layers on the
		// way to a registry or an OCI layout, so that the manifest differs
		// and a later copy can never skip them.
		copyOpts.PreserveDigests = true
		// A nix: index goes whole to destinations that hold indexes, as
		// `skopeo copy --all`; the others get this machine's platform.
		copyOpts.ImageListSelection = copy.CopyAllImages
	}
	var lines *lineReporter
	if c.opts.TTY || c.opts.Debug {
		copyOpts.ReportWriter = c.opts.Progress
	}
	if !c.opts.TTY {
		lines = newLineReporter(c.opts.Progress)
	}
	var dog *watchdog
	if c.stallTimeout > 0 {
		dog = startWatchdog(c.stallTimeout, cancel)
		copyOpts.ProgressInterval = min(progressInterval, c.stallTimeout/stallSlots)
	}
	// containers/image blocks on every event, so one goroutine takes them
	// all until copy.Image returned.
	events := make(chan types.ProgressProperties)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for p := range events {
			if lines != nil {
				lines.event(p)
			}
			if dog != nil {
				dog.event(p)
			}
		}
	}()
	if lines != nil || dog != nil {
		copyOpts.Progress = events
	}
	manifest, err := copy.Image(actx, c.policy, st.ref, c.src, copyOpts)
	close(events)
	<-drained
	if dog != nil {
		dog.halt()
	}
	if err != nil {
		st.abort()
		if cause := context.Cause(actx); errors.Is(cause, ErrStalled) && ctx.Err() == nil {
			return fmt.Errorf("%w (then: %w): check the network and the registry, or allow a longer stall", cause, err)
		}
		return err
	}
	if err := st.commit(ctx); err != nil {
		return err
	}
	if lines != nil {
		lines.finish(manifest)
		fmt.Fprintf(c.opts.Progress, "manifest %s: written to %s\n", digest.FromBytes(manifest), refString(c.dest))
	}
	return nil
}

// SourceFor returns the reference to read src through when copying to a
// destination of transport destTransport: a nix: source is served
// uncompressed to destinations storing plain tars. `nixoci inspect --dest`
// shows what that reference serves.
func SourceFor(src types.ImageReference, destTransport string) (types.ImageReference, error) {
	if src.Transport().Name() != nix.Transport.Name() || !uncompressedDestinations[destTransport] {
		return src, nil
	}
	ref, err := nix.ParseReference(src.StringWithinTransport(), nix.Uncompressed())
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", refString(src), err)
	}
	return ref, nil
}

// load copies a nix: image into the docker daemon, skipping known layers.
func load(ctx context.Context, s *served, srcRef, destRef types.ImageReference, srcSys *types.SystemContext, policy *signature.PolicyContext, opts Options) error {
	tagged, ok := destRef.DockerReference().(reference.NamedTagged)
	if !ok {
		return fmt.Errorf("destination %s: %w", refString(destRef), dockerload.ErrNoTag)
	}
	if allowed(ctx, policy, s) && daemonHas(ctx, s, tagged, opts) {
		return nil
	}
	_, err := dockerload.Load(ctx, srcRef, tagged, dockerload.Options{
		SourceCtx: srcSys,
		Progress:  opts.Progress,
		Policy:    policy,
		Log:       opts.Log,
	})
	if err != nil {
		if errors.Is(err, dockerload.ErrUnreachable) {
			return fmt.Errorf("destination %s (%w): %w", refString(destRef), ErrUnreachable, err)
		}
		return fmt.Errorf("destination %s: %w", refString(destRef), err)
	}
	return nil
}

// policyContext returns the signature policy in path, or one that accepts
// anything when path is empty.
func policyContext(path string) (*signature.PolicyContext, error) {
	var policy *signature.Policy
	if path == "" {
		policy = &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}
	} else {
		p, err := signature.NewPolicyFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading signature policy %s: %w", path, err)
		}
		policy = p
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("signature policy %s: %w", path, err)
	}
	return pc, nil
}
