// Package verify provides the re-streaming check of an image descriptor
// that names the layer, store path and file that differ from it.
package verify
