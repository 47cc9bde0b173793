package nixbuild

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/nixoci/nixoci/pkg/layer"
)

// digestCacheAttr is the attribute naming the digest cache directory: the
// Nix library's `digestCache` argument, passed to the layers and image
// derivations when set.
const digestCacheAttr = "digestCache"

// openDigestCache opens the digest cache the derivation names, or returns
// nil when it names none. The directory must exist: in a sandboxed build
// it is visible only when nix.conf lists it in extra-sandbox-paths, and a
// build that was asked to use it should not quietly go slow.
func openDigestCache(a *Attrs) (*layer.Cache, error) {
	raw, ok := a.Raw(digestCacheAttr)
	if !ok {
		return nil, nil
	}
	var dir string
	if err := json.Unmarshal(raw, &dir); err != nil || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("derivation attributes %s: %s must be an absolute directory path string, not %s", a.File, digestCacheAttr, raw)
	}
	c, err := layer.OpenCache(dir, layer.CacheOptions{Log: a.Log})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("digestCache %s does not exist in the build environment: create it (see the README's digest cache section: mkdir, group nixbld, mode 2770) and, when the sandbox is on, list it in nix.conf's extra-sandbox-paths: %w", dir, err)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("digestCache %s is not writable by the build user: make it group nixbld, mode 2770 (see the README's digest cache section): %w", dir, err)
	case err != nil:
		return nil, fmt.Errorf("digestCache: %w", err)
	}
	return c, nil
}

// logCacheStats notes in the build log what the digest cache did.
func logCacheStats(a *Attrs, c *layer.Cache) {
	if c != nil {
		a.Log.Infof("digest cache %s: %s", c.Dir(), c.Stats())
	}
}
