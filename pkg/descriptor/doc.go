// Package descriptor provides the JSON image and layer descriptors that a Nix
// build emits and every later step (streaming, pushing, verifying) reads.
package descriptor
