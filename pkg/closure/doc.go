// Package closure reads Nix store reference graphs and splits a closure into layers by store-path popularity.
package closure
