package build

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// Owner is a numeric owner of image entries.
type Owner struct {
	UID, GID int
}

// Identity is an owner of image entries by number and by name.
type Identity struct {
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	Uname string `json:"uname"`
	Gname string `json:"gname"`
}

// Options say which store paths go into the layers and how they are made.
type Options struct {
	// MaxLayers, Roots, CopyToRoot, KeepInStore, Ignore, OmitStorePaths
	// and Perms choose the paths and split them into layers: see
	// closure.PlanOptions. CopyToRoot is in merge order: a later path's
	// file replaces an earlier one's, and each replacement is logged.
	MaxLayers      int
	Roots          []string
	CopyToRoot     []string
	KeepInStore    []string
	Ignore         []string
	OmitStorePaths bool
	Perms          []closure.PermSpec
	// KeepDirlinks keeps the CopyToRoot paths' symlinks to directories as
	// symlinks where they meet another path's directory (an error then);
	// by default they merge as directories, as `rsync -k` copies them.
	KeepDirlinks bool
	// Owner, when set, owns every entry of the new layers, relocated
	// content included; StoreOwner and Perms apply after it.
	Owner *Identity
	// Mtime, when set, is the modification time of every entry of the new
	// layers. Nil: 1970-01-01T00:00:01Z.
	Mtime *time.Time
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
	// TarDirectory, when set, receives each layer's uncompressed tar,
	// named by its content (TarName: the diff_id's hex digits and ".tar"),
	// and the layers are served from those files (layers that are not a
	// pure function of the store paths). An existing file of that name is
	// kept: it holds the same tar. No other file there is replaced, so
	// layers described earlier from the same directory stay valid; a file
	// of that name with another size fails the build (ErrTarExists).
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
//
// Relocated (CopyToRoot) content that would hide, with other content, a
// file of a store path that a layer below or one of these layers holds at
// its store location fails the build with a *ShadowError.
func Layers(ctx context.Context, g *closure.Graph, opts Options) (_ []layer.Layer, err error) {
	log := logs.Or(opts.Log)
	plan, err := closure.Plan(g, closure.PlanOptions{
		MaxLayers:      opts.MaxLayers,
		Roots:          opts.Roots,
		CopyToRoot:     opts.CopyToRoot,
		KeepInStore:    opts.KeepInStore,
		Exclude:        layer.StorePaths(opts.Below...),
		Ignore:         opts.Ignore,
		OmitStorePaths: opts.OmitStorePaths,
		Perms:          opts.Perms,
		Log:            log,
	})
	if err != nil {
		return nil, fmt.Errorf("planning layers: %w", err)
	}
	if o := opts.StoreOwner; o != nil && (o.UID != 0 || o.GID != 0 || opts.Owner != nil) {
		chownStorePaths(plan, o.UID, o.GID)
	}
	if o := opts.Owner; o != nil {
		chownAll(plan, *o)
	}
	if err := setStreamOptions(plan, opts); err != nil {
		return nil, err
	}
	if err := logReplacements(ctx, plan, log); err != nil {
		return nil, fmt.Errorf("merging copy-to-root paths: %w", err)
	}
	history := opts.History
	if history != nil && *history == (descriptor.History{}) {
		history = nil
	}
	var tars *tarDir
	if opts.TarDirectory != "" && len(plan) > 0 {
		if tars, err = newTarDir(opts.TarDirectory); err != nil {
			return nil, err
		}
		defer func() { tars.close(err != nil) }()
	}
	dctx := ctx
	check := newShadowCheck(plan, opts.Below)
	if check != nil {
		var cancel context.CancelCauseFunc
		dctx, cancel = check.start(ctx)
		defer cancel(nil)
	}
	specs := make([]layer.Spec, len(plan))
	for i, paths := range plan {
		specs[i] = layer.Spec{Paths: paths, Compression: opts.Compression, History: history, Cache: opts.Cache, SizeHint: narSize(g, paths)}
		if tars != nil {
			specs[i].TarFile = tars.stagingFile(i)
		}
		if check != nil {
			specs[i].Observe = check.observer(paths)
		}
	}
	layers, err := layer.DescribeAll(dctx, specs)
	if check != nil {
		if serr := check.result(ctx, dctx); serr != nil {
			return nil, serr
		}
	}
	if err != nil {
		return nil, err
	}
	if tars != nil {
		return tars.place(layers)
	}
	return layers, nil
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

// chownAll makes o the owner of every entry of every path, first, so that
// the store owner and the image's perms still apply after it.
func chownAll(plan [][]descriptor.Path, o Identity) {
	for _, l := range plan {
		for i := range l {
			u, g, un, gn := o.UID, o.GID, o.Uname, o.Gname
			l[i].Perms = append([]descriptor.Perm{{Regex: ".*", UID: &u, GID: &g, Uname: &un, Gname: &gn}}, l[i].Perms...)
		}
	}
}

// setStreamOptions records the entries' time and the merging of symlinks
// to directories in the paths, where the stream reads them.
func setStreamOptions(plan [][]descriptor.Path, opts Options) error {
	var mtime *int64
	if opts.Mtime != nil {
		s := opts.Mtime.Unix()
		if s < 0 {
			return fmt.Errorf("mtime %s is before 1970-01-01T00:00:00Z: give a later time", opts.Mtime.UTC().Format(time.RFC3339))
		}
		if s != 1 {
			// 1 is the stream's default: leave it unrecorded.
			mtime = &s
		}
	}
	for _, l := range plan {
		for i := range l {
			if mtime != nil {
				m := *mtime
				l[i].Mtime = &m
			}
			if l[i].Rewrite != nil && opts.KeepDirlinks {
				l[i].KeepDirlinks = true
			}
		}
	}
	return nil
}

// logReplacements logs the replacements between the relocated paths of
// every layer that has several (paths at their store location do not
// collide with each other, and only content under nix/store could collide
// with them, so they are not walked twice). Relocated paths that cannot
// merge fail here, before anything is streamed.
func logReplacements(ctx context.Context, plan [][]descriptor.Path, log logrus.FieldLogger) error {
	for _, paths := range plan {
		var relocated []descriptor.Path
		for _, p := range paths {
			if p.Rewrite != nil {
				relocated = append(relocated, p)
			}
		}
		if len(relocated) < 2 {
			continue
		}
		if err := LogReplacements(ctx, relocated, log); err != nil {
			return err
		}
	}
	return nil
}

// LogReplacements logs one warning for each file or symlink of the
// layer's paths that a later path replaces, naming the image path and both
// store paths; identical entries merge silently. It fails as the stream
// would when the paths cannot merge.
func LogReplacements(ctx context.Context, paths []descriptor.Path, log logrus.FieldLogger) error {
	repl, err := tarstream.Replacements(ctx, paths)
	if err != nil {
		return err
	}
	log = logs.Or(log)
	for _, r := range repl {
		if !r.Identical {
			log.Warnf("%s: %s replaces the one from %s (later copyToRoot entries win)", r.Name, r.New, r.Old)
		}
	}
	return nil
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
