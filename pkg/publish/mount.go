package publish

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the driver of containers/image's blob-info cache
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/blobinfocache/sqlite"
	"go.podman.io/image/v5/types"
)

// Cross-repository mounts (Options.MountFrom).
//
// containers/image mounts a blob from another repository of the same
// registry (POST /v2/NAME/blobs/uploads/?mount=DIGEST&from=REPO) only
// when its blob-info cache lists that repository as a place the blob was
// seen, which a fresh machine's cache does not. So the copy gets a
// blob-info cache of its own, in a temporary directory, that lists every
// layer of the image in every MountFrom repository. containers/image
// then, for each layer the destination repository lacks, checks each
// candidate repository (HEAD) and mounts from the first that has it,
// uploading only what none has. A wrong candidate costs one HEAD.

// blobInfoCacheFile is containers/image's blob-info cache file name in a
// BlobInfoCacheDir (pkg/blobinfocache's default).
const blobInfoCacheFile = "blob-info-cache-v1.sqlite"

// mountRepos turns MountFrom entries into repository names of the
// destination's registry: REPO (a path in the registry) or HOST/REPO with
// the destination's HOST. A tag or digest is refused: a mount takes a
// repository.
func mountRepos(from []string, dest types.ImageReference) ([]reference.Named, error) {
	if len(from) == 0 {
		return nil, nil
	}
	named := dest.DockerReference()
	if dest.Transport().Name() != docker.Transport.Name() || named == nil {
		return nil, fmt.Errorf("mounting blobs from %s: %w: mounts work between repositories of one registry, and the destination %s is not a registry", strings.Join(from, ", "), ErrBadOption, refString(dest))
	}
	host := reference.Domain(named)
	var out []reference.Named
	for _, f := range from {
		full := host + "/" + f
		if first, _, ok := strings.Cut(f, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
			if first != host {
				return nil, fmt.Errorf("mounting blobs from %s: %w: it is on registry %s, the destination on %s; a mount works only within one registry", f, ErrBadOption, first, host)
			}
			full = f
		}
		r, err := reference.ParseNamed(full)
		if err != nil {
			return nil, fmt.Errorf("mounting blobs from %q: %w: give a repository such as team/base or %s/team/base: %w", f, ErrBadOption, host, err)
		}
		if !reference.IsNameOnly(r) {
			return nil, fmt.Errorf("mounting blobs from %q: %w: give the repository without a tag or digest", f, ErrBadOption)
		}
		if r.Name() == named.Name() {
			continue // the destination itself is always checked
		}
		out = append(out, r)
	}
	return out, nil
}

// mountCache writes a blob-info cache into a new temporary directory that
// lists each of layers (by digest, with its compression: "gzip", "zstd"
// or "uncompressed") in each of repos, and returns the directory; the
// caller removes it.
func mountCache(layers map[digest.Digest]string, repos []reference.Named) (string, error) {
	dir, err := os.MkdirTemp("", "nixoci-mount-cache-")
	if err != nil {
		return "", fmt.Errorf("creating a blob-info cache for mounts: %w", err)
	}
	path := filepath.Join(dir, blobInfoCacheFile)
	fail := func(err error) (string, error) {
		os.RemoveAll(dir)
		return "", fmt.Errorf("writing a blob-info cache for mounts in %s: %w", dir, err)
	}
	// sqlite.New creates the file with containers/image's schema.
	cache, err := sqlite.New(path)
	if err != nil {
		return fail(fmt.Errorf("%w (mounts need containers/image's SQLite blob-info cache: use a nixoci built with cgo)", err))
	}
	scope := types.BICTransportScope{Opaque: reference.Domain(repos[0])}
	for d := range layers {
		for _, r := range repos {
			cache.RecordKnownLocation(docker.Transport, scope, d, types.BICLocationReference{Opaque: r.Name()})
		}
	}
	// containers/image ignores a cached location of a blob whose
	// compression it does not know, and records compressions only through
	// an internal interface; so they go into the file's DigestCompressors
	// table directly. containers/image keeps that schema for as long as
	// the file name is blob-info-cache-v1.sqlite (a new schema gets a new
	// name).
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return fail(err)
	}
	for d, compressor := range layers {
		if _, err := tx.Exec("INSERT OR REPLACE INTO DigestCompressors(digest, compressor) VALUES (?, ?)", d.String(), compressor); err != nil {
			tx.Rollback()
			return fail(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	// The locations are checked too: a cache that did not take them
	// would make the copy upload everything without a word.
	for d := range layers {
		if len(cache.CandidateLocations(docker.Transport, scope, d, false)) < len(repos) {
			return fail(fmt.Errorf("the cache did not keep the location of %s", d))
		}
		break
	}
	return dir, nil
}

// cacheCompressor is the blob-info cache's name for a layer media type's
// compression.
func cacheCompressor(mediaType string) string {
	switch compressionOf(mediaType) {
	case "gzip":
		return "gzip"
	case "zstd":
		return "zstd"
	}
	return "uncompressed"
}
