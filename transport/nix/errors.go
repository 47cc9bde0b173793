package nix

import "errors"

var (
	// ErrSourceOnly is wrapped by the errors of operations a nix: reference
	// cannot do: writing or deleting an image. Its images live in the Nix
	// store and are built with nix.
	ErrSourceOnly = errors.New("nix: references are read-only image sources")

	// ErrInvalidReference is wrapped by the errors for a malformed nix:
	// reference string or policy scope.
	ErrInvalidReference = errors.New("invalid nix: reference")

	// ErrUnknownBlob is wrapped by the error GetBlob returns for a digest
	// that is neither the image's config nor one of its layers.
	ErrUnknownBlob = errors.New("blob is not part of the image")

	// ErrNotAList is wrapped by the error for a request of a manifest-list
	// instance from a nix: image descriptor, which is a single image.
	ErrNotAList = errors.New("nix: image descriptors are single images, not manifest lists")

	// ErrUnknownManifest is wrapped by the error for a request of a
	// manifest an index does not list.
	ErrUnknownManifest = errors.New("manifest is not one of the index's images")
)
