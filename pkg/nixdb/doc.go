// Package nixdb provides Nix databases that register a set of store paths,
// written with Nix's own nix-store and made reproducible, for an image layer
// that lets Nix run inside the container.
package nixdb
