package nixbuild

import (
	"context"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/registry"
)

// fetchAttrs are the attributes of one pullImageFromManifest blob (nix/pull.nix).
type fetchAttrs struct {
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	TLSVerify bool          `json:"tlsVerify"`
}

// fetchBlob writes one blob to $out (a fixed-output derivation whose hash is the digest).
func fetchBlob(ctx context.Context, a *Attrs, tmp string) error {
	var fa fetchAttrs
	out, err := a.DecodeOut(&fa)
	if err != nil {
		return err
	}
	return registry.FetchBlob(ctx, fa.Reference, fa.Digest, fa.Size, out, registry.Options{TLSVerify: fa.TLSVerify, BlobInfoCacheDir: filepath.Join(tmp, "blob-info-cache")})
}
