// Package nix holds end-to-end tests of the nix/ library: images built with
// real Nix and shipped with their copy scripts to a registry, the Docker
// daemon and Podman.
package nix
