package options

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/layer"
)

// LayersOptions are the flags and arguments of `nixoci layers`.
type LayersOptions struct {
	// Output is the layers descriptor written (-o).
	Output string
	// Paths are the store paths to put in layers (the arguments).
	Paths []string
	// ClosureGraph is a Nix exportReferencesGraph JSON file: with no Paths
	// all its paths go in, else the closure of Paths in it.
	ClosureGraph string
	// MaxLayers is the most layers made; paths are grouped by popularity.
	MaxLayers int
	// CopyToRoot are store paths whose content is relocated to /, in merge
	// order: a later path's file or symlink replaces an earlier one's.
	CopyToRoot cli.StringSlice
	// KeepDirlinks keeps the copy-to-root paths' symlinks to directories
	// as symlinks where they meet another path's directory; by default
	// they merge as directories (rsync -k).
	KeepDirlinks bool
	// NoStorePaths leaves out every path at its store location: only the
	// relocated copy-to-root content goes in.
	NoStorePaths bool
	// Mtime is the modification time of every entry, RFC 3339 or "now";
	// empty keeps 1970-01-01T00:00:01Z.
	Mtime string
	// Perms is a JSON file of permission overrides (see PermEntry).
	Perms string
	// ExcludeLayers are layers descriptors whose paths are left out.
	ExcludeLayers cli.StringSlice
	// Ignore are store paths left out even when referenced.
	Ignore cli.StringSlice
	// History is a JSON file {created_by, author, comment} for every layer.
	History string
	// Compression is the blob compression: gzip, zstd or none.
	Compression string
	// TarDirectory, when set, receives each layer's tar, named by its
	// diff_id (HEX.tar, see build.TarName); the layers are then described by
	// those tars (non-reproducible layers). A file already there is kept
	// when it has that name and size, and never replaced.
	TarDirectory string
	// Cache is the digest cache directory (--cache, default $NIXOCI_CACHE):
	// compressed digests memoised by tar digest, so that a rebuild
	// compresses only the layers that changed. Made when missing. Empty:
	// no cache.
	Cache string
}

// Flags returns the flags of `nixoci layers`, filling o.
func (o *LayersOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the layers descriptor to `LAYERS.json` (required)", Destination: &o.Output},
		&cli.StringFlag{Name: "closure-graph", Usage: "take the store paths and their references from Nix's exportReferencesGraph JSON `FILE` (all of them, or the closure of the PATH arguments)", Destination: &o.ClosureGraph},
		&cli.IntFlag{Name: "max-layers", Usage: "make at most `N` layers, grouping store paths by popularity", Value: 1, Destination: &o.MaxLayers},
		&cli.StringSliceFlag{Name: "copy-to-root", Usage: "relocate the content of store `PATH` to / (repeatable; a later PATH's files replace an earlier one's)", Destination: &o.CopyToRoot},
		&cli.BoolFlag{Name: "keep-dirlinks", Usage: "keep the --copy-to-root paths' symlinks to directories as symlinks where they meet another path's directory, instead of merging them as directories", Destination: &o.KeepDirlinks},
		&cli.BoolFlag{Name: "no-store-paths", Usage: "leave out every store path at its store location: only the --copy-to-root content goes in", Destination: &o.NoStorePaths},
		&cli.StringFlag{Name: "mtime", Usage: "modification `TIME` of every entry (RFC 3339) or \"now\"; default 1970-01-01T00:00:01Z", Destination: &o.Mtime},
		&cli.StringFlag{Name: "perms", Usage: "apply the permission overrides in JSON `FILE`: [{\"path\": STOREPATH, \"regex\": …, \"mode\": \"0700\", \"uid\": …, \"gid\": …, \"uname\": …, \"gname\": …}]", Destination: &o.Perms},
		&cli.StringSliceFlag{Name: "exclude-layers", Usage: "leave out the store paths already in `LAYERS.json` (repeatable)", Destination: &o.ExcludeLayers},
		&cli.StringSliceFlag{Name: "ignore", Usage: "leave out store `PATH` (repeatable)", Destination: &o.Ignore},
		&cli.StringFlag{Name: "history", Usage: "set every layer's history from JSON `FILE` ({created_by, author, comment})", Destination: &o.History},
		&cli.StringFlag{Name: "compression", Usage: "compress layer blobs with `ALGORITHM`: gzip, zstd or none", Value: descriptor.Gzip, Destination: &o.Compression},
		&cli.StringFlag{Name: "cache", Usage: "memoise compressed digests in `DIR` (made when missing), so that a rebuild compresses only the layers whose tar changed; the result is the same as without it (see the README's digest cache section for who may write DIR)", EnvVars: []string{"NIXOCI_CACHE"}, Destination: &o.Cache},
		&cli.StringFlag{Name: "tar-directory", Usage: "write each layer's tar into `DIR` as DIFFID.tar (the diff_id's hex digits) and describe the layer by it (non-reproducible layers); files already there are kept, never replaced", Destination: &o.TarDirectory},
	}
}

// Validate checks the flag values and that every named file and store path exists.
func (o *LayersOptions) Validate() error {
	if err := checkOutput("-o", o.Output); err != nil {
		return err
	}
	if len(o.Paths) == 0 && o.ClosureGraph == "" {
		return errors.New("no store paths: give PATH arguments or --closure-graph FILE")
	}
	if o.MaxLayers < 1 {
		return fmt.Errorf("--max-layers %d: must be at least 1", o.MaxLayers)
	}
	if err := checkOneOf("--compression", o.Compression, compress.Algorithms()); err != nil {
		return err
	}
	if _, err := o.LoadMtime(); err != nil {
		return err
	}
	for _, p := range o.Paths {
		if err := checkStorePath("store path", p); err != nil {
			return err
		}
	}
	for _, p := range o.CopyToRoot.Value() {
		if err := checkStorePath("--copy-to-root", p); err != nil {
			return err
		}
	}
	for _, f := range o.ExcludeLayers.Value() {
		if err := checkFile("--exclude-layers", f); err != nil {
			return err
		}
	}
	for _, f := range [][2]string{{"--closure-graph", o.ClosureGraph}, {"--perms", o.Perms}, {"--history", o.History}} {
		if err := checkFile(f[0], f[1]); err != nil {
			return err
		}
	}
	if o.TarDirectory != "" {
		if err := checkDir("--tar-directory", o.TarDirectory); err != nil {
			return err
		}
	}
	if o.Cache != "" {
		if fi, err := os.Stat(o.Cache); err == nil && !fi.IsDir() {
			return fmt.Errorf("--cache %s (or $NIXOCI_CACHE) is not a directory", o.Cache)
		}
	}
	return nil
}

// OpenCache opens the --cache directory, making it when missing; nil when
// no cache is given.
func (o *LayersOptions) OpenCache(log logrus.FieldLogger) (*layer.Cache, error) {
	if o.Cache == "" {
		return nil, nil
	}
	c, err := layer.OpenCache(o.Cache, layer.CacheOptions{Create: true, Log: log})
	if err != nil {
		return nil, fmt.Errorf("--cache: %w", err)
	}
	return c, nil
}

// LoadPerms reads and checks the --perms file (nil when unset): a JSON list
//
//	[{"path": "/nix/store/…-root", "regex": "^/nix/store/…-root/var/empty$",
//	  "mode": "0700", "uid": 1000, "gid": 1000, "uname": "app", "gname": "app"}]
//
// path is the store path the entry applies to (one of the layered paths),
// regex is matched against the source path of each of its files, and the
// other fields, all optional, set the mode (octal string; "orMode" ORs bits
// in) and owner of the files that match. This is the shape of the Nix
// library's perms argument.
func (o *LayersOptions) LoadPerms() ([]closure.PermSpec, error) {
	if o.Perms == "" {
		return nil, nil
	}
	data, err := os.ReadFile(o.Perms)
	if err != nil {
		return nil, fmt.Errorf("reading --perms: %w", err)
	}
	return closure.ParsePerms(o.Perms, data)
}

// LoadMtime parses --mtime (nil when unset).
func (o *LayersOptions) LoadMtime() (*time.Time, error) {
	if o.Mtime == "" {
		return nil, nil
	}
	t, err := image.ParseCreated(o.Mtime, nil)
	if err != nil {
		return nil, fmt.Errorf("--mtime: %w", err)
	}
	return &t, nil
}

// LoadHistory reads the --history file (nil when unset).
func (o *LayersOptions) LoadHistory() (*descriptor.History, error) {
	if o.History == "" {
		return nil, nil
	}
	var h descriptor.History
	if err := decodeFile("--history", o.History, &h); err != nil {
		return nil, fmt.Errorf("%w (expected {\"created_by\": …, \"author\": …, \"comment\": …})", err)
	}
	return &h, nil
}

// LoadExcluded reads the --exclude-layers descriptors and returns all their layers.
func (o *LayersOptions) LoadExcluded(ctx context.Context) ([]layer.Layer, error) {
	var out []layer.Layer
	for _, f := range o.ExcludeLayers.Value() {
		ls, err := layer.LoadFile(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("--exclude-layers: %w", err)
		}
		out = append(out, ls...)
	}
	return out, nil
}

// Complete takes the store path arguments.
func (o *LayersOptions) Complete(c *cli.Context) error {
	o.Paths = c.Args().Slice()
	return nil
}
