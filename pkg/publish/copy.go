package publish

import (
	"context"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
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
// Copies to dir: and to a new oci: layout are all-or-nothing.
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
	policy, err := policyContext(opts.PolicyPath)
	if err != nil {
		return err
	}
	defer policy.Destroy()

	if srcRef, err = SourceFor(srcRef, destRef.Transport().Name()); err != nil {
		return err
	}
	if srcRef.Transport().Name() == nix.Transport.Name() && destRef.Transport().Name() == "docker-daemon" {
		return load(ctx, srcRef, destRef, srcSys, policy, opts)
	}

	st, err := stage(destRef)
	if err != nil {
		return err
	}
	copyOpts := &copy.Options{
		SourceCtx:            srcSys,
		DestinationCtx:       destSys,
		MaxParallelDownloads: opts.ImageParallelCopies,
	}
	var lines *lineReporter
	switch {
	case opts.TTY:
		copyOpts.ReportWriter = opts.Progress
	default:
		if opts.Debug {
			copyOpts.ReportWriter = opts.Progress
		}
		lines = newLineReporter(opts.Progress)
		copyOpts.Progress = lines.events
		copyOpts.ProgressInterval = progressInterval
	}
	manifest, err := copy.Image(ctx, policy, st.ref, srcRef, copyOpts)
	if lines != nil {
		lines.finish(err == nil)
	}
	if err != nil {
		st.abort()
		return explain(err, srcRef, destRef)
	}
	if err := st.commit(); err != nil {
		return err
	}
	if !opts.TTY {
		fmt.Fprintf(opts.Progress, "manifest %s: written to %s\n", digest.FromBytes(manifest), refString(destRef))
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
func load(ctx context.Context, srcRef, destRef types.ImageReference, srcSys *types.SystemContext, policy *signature.PolicyContext, opts Options) error {
	tagged, ok := destRef.DockerReference().(reference.NamedTagged)
	if !ok {
		return fmt.Errorf("destination %s: %w", refString(destRef), dockerload.ErrNoTag)
	}
	_, err := dockerload.Load(ctx, srcRef, tagged, dockerload.Options{
		SourceCtx: srcSys,
		Progress:  opts.Progress,
		Policy:    policy,
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
