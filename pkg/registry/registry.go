package registry

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

// Options say how to reach a registry.
type Options struct {
	// TLSVerify false skips TLS verification and allows plain HTTP.
	TLSVerify bool
	// AuthFile is the registry auth file; empty uses the usual locations.
	AuthFile string
	// OS, Arch and Variant pick an image from an index; empty is this machine's.
	OS, Arch, Variant string
	// BlobInfoCacheDir is where containers/image keeps its blob-info cache;
	// empty is its default location.
	BlobInfoCacheDir string
}

func (o Options) systemContext() *types.SystemContext {
	sys := &types.SystemContext{
		AuthFilePath:                o.AuthFile,
		OSChoice:                    o.OS,
		ArchitectureChoice:          o.Arch,
		VariantChoice:               o.Variant,
		BlobInfoCacheDir:            o.BlobInfoCacheDir,
		DockerInsecureSkipTLSVerify: types.NewOptionalBool(!o.TLSVerify),
	}
	return sys
}

// dockerReference parses a registry reference, with or without the
// "docker://" prefix.
func dockerReference(ref string) (types.ImageReference, error) {
	r, err := docker.ParseReference(strings.TrimPrefix(ref, "docker:"))
	if err != nil {
		return nil, fmt.Errorf("parsing registry reference %q: %w (expected docker://HOST/NAME[:TAG])", ref, err)
	}
	return r, nil
}

// GetManifest returns the image manifest of ref (docker://HOST/NAME:TAG)
// and its MIME type. When ref names an index, the manifest of the instance
// for opts' platform is returned.
func GetManifest(ctx context.Context, ref string, opts Options) ([]byte, string, error) {
	r, err := dockerReference(ref)
	if err != nil {
		return nil, "", err
	}
	sys := opts.systemContext()
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, "", fmt.Errorf("opening %s: %w", ref, err)
	}
	defer src.Close()
	data, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, "", fmt.Errorf("reading manifest of %s: %w", ref, err)
	}
	if !manifest.MIMETypeIsMultiImage(mt) {
		return data, mt, nil
	}
	list, err := manifest.ListFromBlob(data, mt)
	if err != nil {
		return nil, "", fmt.Errorf("parsing index of %s: %w", ref, err)
	}
	instance, err := list.ChooseInstance(sys)
	if err != nil {
		return nil, "", fmt.Errorf("choosing the platform in the index of %s: %w (set os, arch and variant)", ref, err)
	}
	data, mt, err = src.GetManifest(ctx, &instance)
	if err != nil {
		return nil, "", fmt.Errorf("reading manifest %s of %s: %w", instance, ref, err)
	}
	return data, mt, nil
}

// FetchBlob writes the blob d of repository ref to file, checking its digest
// (and size, when not negative). Nothing is left at file on failure.
func FetchBlob(ctx context.Context, ref string, d digest.Digest, size int64, file string, opts Options) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("fetching blob %q: %w", d, err)
	}
	r, err := dockerReference(ref)
	if err != nil {
		return err
	}
	src, err := r.NewImageSource(ctx, opts.systemContext())
	if err != nil {
		return fmt.Errorf("opening %s: %w", ref, err)
	}
	defer src.Close()
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: d, Size: size}, none.NoCache)
	if err != nil {
		return fmt.Errorf("fetching blob %s from %s: %w", d, ref, err)
	}
	defer rc.Close()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", d, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(file)
		}
	}()
	verifier := d.Verifier()
	n, err := io.Copy(io.MultiWriter(f, verifier), rc)
	if err != nil {
		return fmt.Errorf("fetching blob %s from %s: %w", d, ref, err)
	}
	if !verifier.Verified() {
		return fmt.Errorf("blob %s from %s: the bytes received have a different digest", d, ref)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s from %s: received %d bytes, the manifest says %d", d, ref, n, size)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing blob %s to %s: %w", d, file, err)
	}
	done = true
	return nil
}
