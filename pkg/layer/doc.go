// Package layer provides layers as values: each serves its digests and sizes
// from its descriptor without reading anything, and its compressed or
// uncompressed bytes lazily, from store paths, a stored tar or a stored blob.
package layer
