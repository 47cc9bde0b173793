package nixbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

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
	// FromImageName and FromImageTag choose among the images of a
	// docker-archive fromImage (dockerTools' rule; see archive.Select).
	FromImageName *string `json:"fromImageName"`
	FromImageTag  *string `json:"fromImageTag"`
	// MaxLayersCountsBase makes maxLayers the whole image's layer count,
	// base and buildLayer layers included, as streamLayeredImage's is.
	MaxLayersCountsBase bool `json:"maxLayersCountsBase"`
	// Layers are buildLayer outputs (or layers documents), base first.
	Layers                []string `json:"layers"`
	InitializeNixDatabase bool     `json:"initializeNixDatabase"`
	NixUID                int      `json:"nixUid"`
	NixGID                int      `json:"nixGid"`
	NixStore              *string  `json:"nixStore"`
	// KeepContentsDirlinks, IncludeStorePaths, Mtime and Owner are
	// dockerTools' keepContentsDirlinks, includeStorePaths (null: true),
	// mtime (RFC 3339 or "now"; "" keeps the default) and
	// uid/gid/uname/gname (null: root, unchanged).
	KeepContentsDirlinks bool            `json:"keepContentsDirlinks"`
	IncludeStorePaths    *bool           `json:"includeStorePaths"`
	Mtime                string          `json:"mtime"`
	Owner                *build.Identity `json:"owner"`
	// CustomPerms is a JSON file of perms entries written by the
	// customisation derivation (extraCommands, fakeRootCommands), whose
	// tree is then the only copyToRoot path.
	CustomPerms *string `json:"customPerms"`
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
	base, err := loadBase(ctx, &ia)
	if err != nil {
		return err
	}
	maxLayers, err := ownMaxLayers(&ia, base, below)
	if err != nil {
		return err
	}
	perms := ia.Perms
	if ia.CustomPerms != nil {
		data, err := os.ReadFile(*ia.CustomPerms)
		if err != nil {
			return fmt.Errorf("reading the modes and owners extraCommands and fakeRootCommands left: %w", err)
		}
		custom, err := closure.ParsePerms(*ia.CustomPerms, data)
		if err != nil {
			return err
		}
		perms = append(append([]closure.PermSpec(nil), custom...), perms...)
	}
	var mtime *time.Time
	if ia.Mtime != "" {
		t, err := image.ParseCreated(ia.Mtime, nil)
		if err != nil {
			return fmt.Errorf("mtime: %w", err)
		}
		mtime = &t
	}
	cache, err := openDigestCache(a)
	if err != nil {
		return err
	}
	own, err := build.Layers(ctx, g, build.Options{
		MaxLayers:  maxLayers,
		Roots:      append(append([]string(nil), ia.ConfigPaths...), ia.CopyToRoot...),
		CopyToRoot: ia.CopyToRoot,
		// The config refers to its paths under /nix/store, copyToRoot
		// ones included.
		KeepInStore:    ia.ConfigPaths,
		OmitStorePaths: ia.IncludeStorePaths != nil && !*ia.IncludeStorePaths,
		KeepDirlinks:   ia.KeepContentsDirlinks,
		Perms:          perms,
		Below:          below,
		Owner:          ia.Owner,
		StoreOwner:     &build.Owner{UID: ia.NixUID, GID: ia.NixGID},
		Mtime:          mtime,
		Compression:    ia.Compression,
		History:        &descriptor.History{CreatedBy: "nixoci buildImage"},
		Log:            a.Log,
		Cache:          cache,
	})
	if err != nil {
		return err
	}
	logCacheStats(a, cache)
	layers := append(below, own...)
	if ia.InitializeNixDatabase {
		db, err := nixDatabaseLayer(ctx, a, &ia, tmp, g, layers)
		if err != nil {
			return err
		}
		layers = append(layers, db)
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

// loadBase reads fromImage, whatever it is (see image.Read): a nixoci or
// nix2container descriptor, or a docker-archive whose layers are then
// served from the archive in place, compressed like the image's own.
func loadBase(ctx context.Context, ia *imageAttrs) (*image.Image, error) {
	if ia.FromImage == nil {
		return nil, nil
	}
	opts := image.ReadOptions{Compression: ia.Compression}
	if ia.FromImageName != nil {
		opts.Name = *ia.FromImageName
	}
	if ia.FromImageTag != nil {
		opts.Tag = *ia.FromImageTag
	}
	base, err := image.Read(ctx, *ia.FromImage, opts)
	if err != nil {
		return nil, fmt.Errorf("fromImage: %w", err)
	}
	return base, nil
}

// ownMaxLayers is the layer count the image's own closure may be split
// into: maxLayers, less the base's and the layers below when maxLayers
// counts them (with the Nix database layer, one less again).
func ownMaxLayers(ia *imageAttrs, base *image.Image, below []layer.Layer) (int, error) {
	if !ia.MaxLayersCountsBase {
		return ia.MaxLayers, nil
	}
	used := len(below)
	if base != nil {
		used += len(base.Layers)
	}
	if ia.InitializeNixDatabase {
		used++
	}
	if ia.MaxLayers-used < 1 {
		return 0, fmt.Errorf("maxLayers %d leaves no layer for the image's contents: fromImage, the layers below and the Nix database take %d; raise maxLayers", ia.MaxLayers, used)
	}
	return ia.MaxLayers - used, nil
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
func nixDatabaseLayer(ctx context.Context, a *Attrs, ia *imageAttrs, tmp string, own *closure.Graph, layers []layer.Layer) (layer.Layer, error) {
	if ia.NixStore == nil || *ia.NixStore == "" {
		return nil, fmt.Errorf("initializeNixDatabase: no nix-store given: pass `nix` (or `pkgs`) when importing nixoci's nix/ library")
	}
	dbOut, err := a.Output("db")
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
