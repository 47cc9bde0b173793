// Package registry provides the two registry reads the Nix library's
// fixed-output derivations need: an image's manifest (with the platform
// chosen from an index) and one blob, checked against its digest.
package registry
