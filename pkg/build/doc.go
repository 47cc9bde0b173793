// Package build provides the one pipeline that turns a store path graph
// into described layers: plan (pkg/closure), then describe (pkg/layer).
// `nixoci layers` and the Nix library's buildLayer and buildImage all call it.
package build
