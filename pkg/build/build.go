package build

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// Owner is a numeric owner of image entries.
type Owner struct {
	UID, GID int
}

// Options say which store paths go into the layers and how they are made.
type Options struct {
	// MaxLayers, Roots, CopyToRoot, KeepInStore, Ignore and Perms choose
	// the paths and split them into layers: see closure.PlanOptions.
	MaxLayers   int
	Roots       []string
	CopyToRoot  []string
	KeepInStore []string
	Ignore      []string
	Perms       []closure.PermSpec
	// Below are the layers these are built on: the store paths they hold
	// are left out (relocated CopyToRoot content is still written).
	Below []layer.Layer
	// StoreOwner, when set, owns every entry of the store paths put at
	// their store location (not the relocated copies); the Perms still
	// apply after it.
	StoreOwner *Owner
	// Compression is "gzip", "zstd" or "none"; "" is layer.DefaultCompression.
	Compression string
	// History is every layer's history entry; nil or empty gives none.
	History *descriptor.History
	// TarDirectory, when set, receives each layer's uncompressed tar as
	// layer-N.tar, and the layers are served from those files (layers
	// that are not a pure function of the store paths).
	TarDirectory string
	// Log receives the planner's notes. Default: discarded.
	Log logrus.FieldLogger
	// Cache, when set, memoises compression across builds: only layers
	// whose tar it does not know are compressed (see layer.Cache). The
	// layers are the same as without it.
	Cache *layer.Cache
}

// Layers plans the layers of g's store paths and describes them, all in
// parallel: each layer's tar is streamed once to compute its digests. An
// empty plan gives no layers. On failure no tar file is left behind.
func Layers(ctx context.Context, g *closure.Graph, opts Options) ([]layer.Layer, error) {
	plan, err := closure.Plan(g, closure.PlanOptions{
		MaxLayers:   opts.MaxLayers,
		Roots:       opts.Roots,
		CopyToRoot:  opts.CopyToRoot,
		KeepInStore: opts.KeepInStore,
		Exclude:     layer.StorePaths(opts.Below...),
		Ignore:      opts.Ignore,
		Perms:       opts.Perms,
		Log:         logs.Or(opts.Log),
	})
	if err != nil {
		return nil, fmt.Errorf("planning layers: %w", err)
	}
	if o := opts.StoreOwner; o != nil && (o.UID != 0 || o.GID != 0) {
		chownStorePaths(plan, o.UID, o.GID)
	}
	history := opts.History
	if history != nil && *history == (descriptor.History{}) {
		history = nil
	}
	specs := make([]layer.Spec, len(plan))
	for i, paths := range plan {
		specs[i] = layer.Spec{Paths: paths, Compression: opts.Compression, History: history, Cache: opts.Cache, SizeHint: narSize(g, paths)}
		if opts.TarDirectory != "" {
			specs[i].TarFile = filepath.Join(opts.TarDirectory, fmt.Sprintf("layer-%d.tar", i))
		}
	}
	return layer.DescribeAll(ctx, specs)
}

// chownStorePaths makes uid:gid the owner of every entry of the paths put
// at their store location.
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

// narSize is the sum of the NAR sizes the graph records for paths (0 when
// it records none): about the size of their tar, so that the largest
// layers are started first.
func narSize(g *closure.Graph, paths []descriptor.Path) int64 {
	var n int64
	for _, p := range paths {
		if node, ok := g.Nodes[p.Path]; ok {
			n += node.NarSize
		}
	}
	return n
}
