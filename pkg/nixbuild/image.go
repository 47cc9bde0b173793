package nixbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/nixdb"
)

// imageAttrs are buildImage's attributes (nix/image.nix).
type imageAttrs struct {
	ImageName   string             `json:"imageName"`
	ImageTag    *string            `json:"imageTag"`
	Config      json.RawMessage    `json:"config"`
	ConfigPaths []string           `json:"configPaths"`
	Created     string             `json:"created"`
	Arch        string             `json:"arch"`
	Variant     string             `json:"variant"`
	OS          string             `json:"os"`
	Author      *string            `json:"author"`
	Compression string             `json:"compression"`
	MaxLayers   int                `json:"maxLayers"`
	CopyToRoot  []string           `json:"copyToRoot"`
	Perms       []closure.PermSpec `json:"perms"`
	FromImage   *string            `json:"fromImage"`
	// Layers are buildLayer outputs (or layers documents), base first.
	Layers                []string `json:"layers"`
	InitializeNixDatabase bool     `json:"initializeNixDatabase"`
	NixUID                int      `json:"nixUid"`
	NixGID                int      `json:"nixGid"`
	NixStore              *string  `json:"nixStore"`
}

// layerGraphKey is the exportReferencesGraph key holding the closure of the
// buildLayer outputs, whose path infos register the paths those layers hold.
const layerGraphKey = "layerClosure"

// buildImage writes the image descriptor to $out: the base image's layers,
// the buildLayer layers, the layers planned from the config's and
// copyToRoot's closure (leaving out what the layers below hold) and, with
// initializeNixDatabase, a layer holding a Nix database written to $db.
func buildImage(ctx context.Context, a *Attrs, tmp string) error {
	var ia imageAttrs
	out, err := a.DecodeOut(&ia)
	if err != nil {
		return err
	}
	g, err := graph(a, graphKey)
	if err != nil {
		return err
	}
	below, err := loadLayerDirs(ctx, ia.Layers)
	if err != nil {
		return err
	}
	cache, err := openDigestCache(a)
	if err != nil {
		return err
	}
	own, err := build.Layers(ctx, g, build.Options{
		MaxLayers:  ia.MaxLayers,
		Roots:      append(append([]string(nil), ia.ConfigPaths...), ia.CopyToRoot...),
		CopyToRoot: ia.CopyToRoot,
		// The config refers to its paths under /nix/store, copyToRoot
		// ones included.
		KeepInStore: ia.ConfigPaths,
		Perms:       ia.Perms,
		Below:       below,
		StoreOwner:  &build.Owner{UID: ia.NixUID, GID: ia.NixGID},
		Compression: ia.Compression,
		History:     &descriptor.History{CreatedBy: "nixoci buildImage"},
		Log:         a.Log,
		Cache:       cache,
	})
	if err != nil {
		return err
	}
	logCacheStats(a, cache)
	layers := append(below, own...)
	if ia.InitializeNixDatabase {
		db, err := nixDatabaseLayer(ctx, a, &ia, tmp, layers)
		if err != nil {
			return err
		}
		layers = append(layers, db)
	}

	var base *image.Image
	if ia.FromImage != nil {
		if base, err = image.Load(ctx, *ia.FromImage); err != nil {
			return fmt.Errorf("loading base image: %w", err)
		}
	}
	var cfg *image.ParsedConfig
	if len(ia.Config) > 0 {
		if cfg, err = image.ParseConfig("the config attribute", ia.Config); err != nil {
			return err
		}
		warnIgnored(a, cfg)
	}
	tag := ""
	if ia.ImageTag != nil {
		tag = *ia.ImageTag
	}
	img, err := image.Assemble(image.AssembleOptions{
		Name:    ia.ImageName,
		Tag:     tag,
		Base:    base,
		Layers:  layers,
		Config:  cfg,
		Arch:    ia.Arch,
		OS:      ia.OS,
		Variant: ia.Variant,
		Created: ia.Created,
		Log:     a.Log,
	})
	if err != nil {
		return err
	}
	if ia.Author != nil && *ia.Author != "" {
		img.Author = *ia.Author
	}
	return image.Write(out, img)
}

// warnIgnored says which config keys are not OCI image config fields.
func warnIgnored(a *Attrs, cfg *image.ParsedConfig) {
	if len(cfg.Ignored) > 0 {
		a.Log.Warnf("config: ignoring keys that are not OCI image config fields: %v", cfg.Ignored)
	}
}

// nixDatabaseLayer writes a Nix database registering exactly the store
// paths that layers hold under /nix/store to the "db" output, and returns
// the layer of that output relocated to "/".
func nixDatabaseLayer(ctx context.Context, a *Attrs, ia *imageAttrs, tmp string, layers []layer.Layer) (layer.Layer, error) {
	if ia.NixStore == nil || *ia.NixStore == "" {
		return nil, fmt.Errorf("initializeNixDatabase: no nix-store given: pass `nix` (or `pkgs`) when importing nixoci's nix/ library")
	}
	dbOut, err := a.Output("db")
	if err != nil {
		return nil, err
	}
	own, err := graph(a, graphKey)
	if err != nil {
		return nil, err
	}
	lower, err := graph(a, layerGraphKey)
	if err != nil {
		return nil, err
	}
	g, err := closure.Merge(own, lower)
	if err != nil {
		return nil, err
	}
	set := layer.StorePaths(layers...)
	paths := make([]string, 0, len(set))
	for p := range set {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if err := nixdb.Write(ctx, nixdb.Options{NixStore: *ia.NixStore, Graph: g, Paths: paths, Scratch: tmp, Out: dbOut, Log: a.Log}); err != nil {
		return nil, fmt.Errorf("initializeNixDatabase: %w", err)
	}
	return layer.Describe(ctx, layer.Spec{
		Paths:       []descriptor.Path{nixdb.LayerPath(dbOut, ia.NixUID, ia.NixGID)},
		Compression: ia.Compression,
		History:     &descriptor.History{CreatedBy: "nixoci buildImage (initializeNixDatabase)"},
	})
}
