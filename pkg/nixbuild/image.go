package nixbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
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
	below, err := loadLayerDirs(ia.Layers)
	if err != nil {
		return err
	}
	history := &descriptor.History{CreatedBy: "nixoci buildImage"}
	roots := append(append([]string(nil), ia.ConfigPaths...), ia.CopyToRoot...)
	plan, err := closure.Plan(g, closure.PlanOptions{
		MaxLayers:  ia.MaxLayers,
		Roots:      roots,
		CopyToRoot: ia.CopyToRoot,
		// The config refers to its paths under /nix/store, copyToRoot
		// ones included.
		KeepInStore: ia.ConfigPaths,
		Exclude:     below.storePaths,
		Perms:       ia.Perms,
	})
	if err != nil {
		return fmt.Errorf("planning layers: %w", err)
	}
	if ia.NixUID != 0 || ia.NixGID != 0 {
		chownStorePaths(plan, ia.NixUID, ia.NixGID)
	}
	specs := make([]layer.Spec, len(plan))
	for i, paths := range plan {
		specs[i] = layer.Spec{Paths: paths, Compression: ia.Compression, History: history}
	}
	own, err := layer.DescribeAll(ctx, specs)
	if err != nil {
		return err
	}
	layerFiles := make([]string, 0, len(ia.Layers)+2)
	for _, l := range ia.Layers {
		layerFiles = append(layerFiles, layersFile(l))
	}
	if len(own) > 0 {
		f := filepath.Join(tmp, "image-layers.json")
		if err := descriptor.Write(f, &descriptor.Layers{Layers: own}); err != nil {
			return err
		}
		layerFiles = append(layerFiles, f)
	}
	if ia.InitializeNixDatabase {
		inStore := map[string]bool{}
		for p := range below.storePaths {
			inStore[p] = true
		}
		for _, p := range planStorePaths(plan) {
			inStore[p] = true
		}
		f, err := nixDatabaseLayer(ctx, a, &ia, tmp, sortedKeys(inStore))
		if err != nil {
			return err
		}
		layerFiles = append(layerFiles, f)
	}

	tag := HashPart(out)
	if ia.ImageTag != nil && *ia.ImageTag != "" {
		tag = *ia.ImageTag
	}
	opts := image.AssembleOptions{
		Name:       ia.ImageName,
		Tag:        tag,
		ConfigJSON: ia.Config,
		Arch:       ia.Arch,
		OS:         ia.OS,
		Variant:    ia.Variant,
		Created:    ia.Created,
		Rehash:     func(img *descriptor.Image) error { return layer.Rehash(ctx, img) },
		Layers:     layerFiles,
	}
	if ia.FromImage != nil {
		opts.FromImage = *ia.FromImage
	}
	img, err := image.Assemble(opts)
	if err != nil {
		return err
	}
	if ia.Author != nil && *ia.Author != "" {
		img.Author = *ia.Author
	}
	return descriptor.Write(out, img)
}

// chownStorePaths makes uid:gid the owner of every entry of the paths put
// at their store location (nixUid/nixGid).
func chownStorePaths(plan [][]descriptor.Path, uid, gid int) {
	for _, l := range plan {
		for i := range l {
			if l[i].Rewrite != nil {
				continue
			}
			u, g := uid, gid
			// First, so that the image's own perms entries still apply.
			l[i].Perms = append([]descriptor.Perm{{Regex: ".*", UID: &u, GID: &g}}, l[i].Perms...)
		}
	}
}
