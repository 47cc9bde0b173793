// Package archive reads docker-archives (what `docker save`, skopeo and
// dockerTools write, plain or compressed) in place: an index of their
// images, and layers served from the archive's members without unpacking.
package archive
