package nixbuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// LayersFileName is the layers document in a buildLayer output directory.
const LayersFileName = "layers.json"

// StorePathsFileName lists, in a buildLayer output directory, the store
// paths its layers put under /nix/store (a JSON array). Layers described by
// a stored tar do not list their paths, so the layers above and the Nix
// database learn them from this file.
const StorePathsFileName = "store-paths.json"

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
}

// buildLayers writes $out/layers.json (and, for non-reproducible layers,
// each layer's tar next to it): what `nixoci layers` writes for the same
// paths, with the paths of the layers below excluded.
func buildLayers(ctx context.Context, a *Attrs) error {
	var la layerAttrs
	out, err := a.DecodeOut(&la)
	if err != nil {
		return err
	}
	g, err := graph(a, graphKey)
	if err != nil {
		return err
	}
	below, err := loadLayerDirs(la.ExcludeLayers)
	if err != nil {
		return err
	}
	plan, err := closure.Plan(g, closure.PlanOptions{
		MaxLayers:  la.MaxLayers,
		Roots:      append(append([]string(nil), la.Deps...), la.CopyToRoot...),
		CopyToRoot: la.CopyToRoot,
		Exclude:    below.storePaths,
		Ignore:     la.Ignore,
		Perms:      la.Perms,
	})
	if err != nil {
		return fmt.Errorf("planning layers: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("creating output %s: %w", out, err)
	}
	specs := make([]layer.Spec, len(plan))
	for i, paths := range plan {
		specs[i] = layer.Spec{Paths: paths, Compression: la.Compression, History: cleanHistory(la.History)}
		if !la.Reproducible {
			specs[i].TarFile = filepath.Join(out, fmt.Sprintf("layer-%d.tar", i))
		}
	}
	layers, err := layer.DescribeAll(ctx, specs)
	if err != nil {
		return err
	}
	if err := writeStorePaths(filepath.Join(out, StorePathsFileName), planStorePaths(plan)); err != nil {
		return err
	}
	return descriptor.Write(filepath.Join(out, LayersFileName), &descriptor.Layers{Layers: orEmpty(layers)})
}

// planStorePaths returns the paths a plan puts at their store location.
func planStorePaths(plan [][]descriptor.Path) []string {
	var out []string
	for _, l := range plan {
		for _, p := range l {
			if p.Rewrite == nil {
				out = append(out, p.Path)
			}
		}
	}
	sort.Strings(out)
	return out
}

func writeStorePaths(file string, paths []string) error {
	if paths == nil {
		paths = []string{}
	}
	data, err := json.Marshal(paths)
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
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

// lowerLayers are the layers of buildLayer outputs, base first, and the
// store paths they put under /nix/store.
type lowerLayers struct {
	layers     []descriptor.Layer
	storePaths map[string]bool
}

// loadLayerDirs reads buildLayer outputs (or layers documents), in order.
func loadLayerDirs(dirs []string) (*lowerLayers, error) {
	out := &lowerLayers{storePaths: map[string]bool{}}
	for _, d := range dirs {
		ls, err := descriptor.LoadLayers(layersFile(d))
		if err != nil {
			return nil, fmt.Errorf("reading layers below: %w", err)
		}
		out.layers = append(out.layers, ls.Layers...)
		for p := range closure.ExcludeSet(ls.Layers...) {
			out.storePaths[p] = true
		}
		data, err := os.ReadFile(filepath.Join(d, StorePathsFileName))
		switch {
		case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			continue
		case err != nil:
			return nil, fmt.Errorf("reading layers below: %w", err)
		}
		var paths []string
		if err := json.Unmarshal(data, &paths); err != nil {
			return nil, fmt.Errorf("reading layers below: parsing %s: %w", filepath.Join(d, StorePathsFileName), err)
		}
		for _, p := range paths {
			out.storePaths[p] = true
		}
	}
	return out, nil
}

// cleanHistory returns nil for an empty history.
func cleanHistory(h *descriptor.History) *descriptor.History {
	if h == nil || (h.CreatedBy == "" && h.Author == "" && h.Comment == "") {
		return nil
	}
	return h
}

func orEmpty(ls []descriptor.Layer) []descriptor.Layer {
	if ls == nil {
		return []descriptor.Layer{}
	}
	return ls
}

// sortedKeys returns the keys of set, sorted.
func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
