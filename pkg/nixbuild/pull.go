package nixbuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/publish"
	"github.com/nixoci/nixoci/pkg/pull"
	"github.com/nixoci/nixoci/pkg/registry"
)

// pullAttrs are pullImage's attributes (nix/pull.nix).
type pullAttrs struct {
	ImageName   string        `json:"imageName"`
	ImageDigest digest.Digest `json:"imageDigest"`
	OS          string        `json:"os"`
	Arch        string        `json:"arch"`
	Variant     string        `json:"variant"`
	TLSVerify   bool          `json:"tlsVerify"`
}

// pullToDir copies docker://imageName@imageDigest to dir:$out, the output of
// a fixed-output derivation. An index digest is first resolved to the
// image for os/arch/variant, so the layout holds one image, as fetched.
func pullToDir(ctx context.Context, a *Attrs, tmp string) error {
	var pa pullAttrs
	out, err := a.DecodeOut(&pa)
	if err != nil {
		return err
	}
	if err := pa.ImageDigest.Validate(); err != nil {
		return fmt.Errorf("pullImage: imageDigest %q: %w", pa.ImageDigest, err)
	}
	cache := filepath.Join(tmp, "blob-info-cache")
	ref := "docker://" + pa.ImageName + "@" + pa.ImageDigest.String()
	data, _, err := registry.GetManifest(ctx, ref, registry.Options{TLSVerify: pa.TLSVerify, OS: pa.OS, Arch: pa.Arch, Variant: pa.Variant, BlobInfoCacheDir: cache})
	if err != nil {
		return err
	}
	instance, err := manifest.Digest(data)
	if err != nil {
		return fmt.Errorf("digest of the manifest of %s: %w", ref, err)
	}
	if instance != pa.ImageDigest {
		ref = "docker://" + pa.ImageName + "@" + instance.String()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("creating output %s: %w", out, err)
	}
	tls := pa.TLSVerify
	return publish.Copy(ctx, ref, "dir:"+out, publish.Options{
		SrcTLSVerify:     &tls,
		BlobInfoCacheDir: cache,
		Progress:         os.Stderr,
	})
}

// describeAttrs are the attributes of the derivations that describe a
// pulled image (nix/pull.nix).
type describeAttrs struct {
	Dir       string                   `json:"dir"`
	Manifest  string                   `json:"manifest"`
	Blobs     map[digest.Digest]string `json:"blobs"`
	ImageName string                   `json:"imageName"`
	ImageTag  string                   `json:"imageTag"`
	OS        string                   `json:"os"`
	Arch      string                   `json:"arch"`
	Variant   string                   `json:"variant"`
}

func (da describeAttrs) options(a *Attrs) pull.Options {
	return pull.Options{OS: da.OS, Arch: da.Arch, Variant: da.Variant, Name: da.ImageName, Tag: da.ImageTag, Log: a.Log}
}

// imageFromDir writes the descriptor of the dir: layout pullImage fetched
// to $out, as `nixoci image-from-dir` does.
func imageFromDir(ctx context.Context, a *Attrs, _ string) error {
	var da describeAttrs
	out, err := a.DecodeOut(&da)
	if err != nil {
		return err
	}
	img, err := pull.FromDir(ctx, da.Dir, da.options(a))
	if err != nil {
		return err
	}
	return descriptor.Write(out, img)
}

// imageFromManifest writes the descriptor of a manifest file and its
// fetched blobs to $out, as `nixoci image-from-manifest` does.
func imageFromManifest(ctx context.Context, a *Attrs, _ string) error {
	var da describeAttrs
	out, err := a.DecodeOut(&da)
	if err != nil {
		return err
	}
	img, err := pull.FromManifest(ctx, da.Manifest, da.Blobs, da.options(a))
	if err != nil {
		return err
	}
	return descriptor.Write(out, img)
}
