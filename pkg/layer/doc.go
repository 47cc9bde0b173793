// Package layer provides layer descriptors computed by streaming store paths
// once, and the lazily streamed blob bytes those descriptors promise.
package layer
