// Package nix provides the nix: containers/image transport, an image
// source that serves a nixoci image (or index) descriptor by streaming each
// layer from the Nix store only when a destination asks for it.
package nix
