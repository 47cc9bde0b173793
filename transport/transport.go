// Package transport registers the nix: containers/image transport, which
// lives in transport/nix, for programs that import this package for its
// side effect (`import _ "github.com/nixoci/nixoci/transport"`), as earlier
// releases documented. New code should import transport/nix.
package transport

import (
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/transport/nix"
)

// Transport is the nix: transport (nix.Transport).
var Transport types.ImageTransport = nix.Transport

// ParseReference is nix.ParseReference.
func ParseReference(s string, opts ...nix.Option) (types.ImageReference, error) {
	return nix.ParseReference(s, opts...)
}

// NewReference is nix.NewReference.
func NewReference(path string, opts ...nix.Option) (types.ImageReference, error) {
	return nix.NewReference(path, opts...)
}

// Uncompressed is nix.Uncompressed.
func Uncompressed() nix.Option { return nix.Uncompressed() }

// The nix: transport's sentinel errors (see transport/nix).
var (
	ErrSourceOnly       = nix.ErrSourceOnly
	ErrInvalidReference = nix.ErrInvalidReference
	ErrUnknownBlob      = nix.ErrUnknownBlob
	ErrNotAList         = nix.ErrNotAList
)
