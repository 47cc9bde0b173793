// Package nixbuild provides the builders of the Nix library's derivations:
// `nixoci nix-build <kind>` reads the derivation's structured attributes and
// calls the same packages as the command line.
package nixbuild
