// Package save writes images as one docker-archive stream, as `docker save`
// does, with every layer streamed from where it is (the Nix store, a stored
// tar or blob, another archive) and nothing written to disk on the way.
package save
