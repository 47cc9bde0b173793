package nixbuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// LayersFileName is the layers document in a buildLayer output directory.
const LayersFileName = "layers.json"

// graphKey is the exportReferencesGraph key of the paths to put in layers.
const graphKey = "closure"

// layerAttrs are buildLayer's attributes (nix/layer.nix).
type layerAttrs struct {
	Deps          []string            `json:"deps"`
	CopyToRoot    []string            `json:"copyToRoot"`
	Ignore        []string            `json:"ignore"`
	ExcludeLayers []string            `json:"excludeLayers"`
	Reproducible  bool                `json:"reproducible"`
	Perms         []closure.PermSpec  `json:"perms"`
	MaxLayers     int                 `json:"maxLayers"`
	History       *descriptor.History `json:"history"`
	Compression   string              `json:"compression"`
	// KeepContentsDirlinks: see build.Options.KeepDirlinks.
	KeepContentsDirlinks bool `json:"keepContentsDirlinks"`
}

// buildLayers writes $out/layers.json (and, for non-reproducible layers,
// each layer's tar next to it): what `nixoci layers` writes for the same
// paths, with the paths of the layers below left out.
func buildLayers(ctx context.Context, a *Attrs, _ string) error {
	var la layerAttrs
	out, err := a.DecodeOut(&la)
	if err != nil {
		return err
	}
	g, err := graph(a, graphKey)
	if err != nil {
		return err
	}
	below, err := loadLayerDirs(ctx, la.ExcludeLayers)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("creating output %s: %w", out, err)
	}
	opts := build.Options{
		MaxLayers:    la.MaxLayers,
		Roots:        append(append([]string(nil), la.Deps...), la.CopyToRoot...),
		CopyToRoot:   la.CopyToRoot,
		Ignore:       la.Ignore,
		Perms:        la.Perms,
		Below:        below,
		Compression:  la.Compression,
		History:      la.History,
		KeepDirlinks: la.KeepContentsDirlinks,
		Log:          a.Log,
	}
	if !la.Reproducible {
		opts.TarDirectory = out
	}
	if opts.Cache, err = openDigestCache(a); err != nil {
		return err
	}
	layers, err := build.Layers(ctx, g, opts)
	if err != nil {
		return err
	}
	logCacheStats(a, opts.Cache)
	return layer.WriteFile(filepath.Join(out, LayersFileName), layers)
}

// graph parses the exportReferencesGraph result under key; an attribute
// that is absent gives an empty graph.
func graph(a *Attrs, key string) (*closure.Graph, error) {
	raw, ok := a.Raw(key)
	if !ok {
		return closure.ParseGraph(a.File+" ("+key+")", []byte("[]"))
	}
	return closure.ParseGraph(a.File+" ("+key+")", raw)
}

// layersFile returns the layers document of a buildLayer output (or the
// path itself when it is a file).
func layersFile(p string) string {
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return filepath.Join(p, LayersFileName)
	}
	return p
}

// loadLayerDirs reads the layers of buildLayer outputs (or layers
// documents), base first.
func loadLayerDirs(ctx context.Context, dirs []string) ([]layer.Layer, error) {
	var out []layer.Layer
	for _, d := range dirs {
		ls, err := layer.LoadFile(ctx, layersFile(d))
		if err != nil {
			return nil, fmt.Errorf("reading layers below: %w", err)
		}
		out = append(out, ls...)
	}
	return out, nil
}
