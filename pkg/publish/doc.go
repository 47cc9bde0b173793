// Package publish provides Copy, the engine of `nixoci copy`: a skopeo-like
// copy between any two containers/image references that serves nix: images
// in the representation each destination stores.
package publish
