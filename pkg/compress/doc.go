// Package compress provides the gzip, zstd and identity layer compressors,
// each with a recorded identity that tells whether a later run reproduces the same bytes.
package compress
