// Package testenv provides what the end-to-end tests and benchmarks share: the
// nixoci binary built from this tree, the CI rule for missing components
// (skip outside CI, fail under CI=true), bounded commands, a private
// docker-registry on 127.0.0.1, single-user Nix and static busybox.
package testenv
