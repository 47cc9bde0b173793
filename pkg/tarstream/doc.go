// Package tarstream provides the deterministic tar stream of a set of store
// paths: the same contents always give the same bytes.
package tarstream
