package commands

import (
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/build"
	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/layer"
)

// addLayers registers `nixoci layers`.
func addLayers(app *cli.App) {
	var o options.LayersOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "layers",
		Usage:     "describe layers of store paths: digests and sizes, computed by streaming each layer once",
		ArgsUsage: "PATH...",
		Description: `Splits the store paths into at most --max-layers layers by popularity (as
nixpkgs' buildLayeredImage does), streams each layer's deterministic tar once
(all layers in parallel) and writes LAYERS.json: per layer its store paths,
diff_id, compressed digest and sizes. No tar is kept unless --tar-directory
is given. ` + "`nixoci image`" + ` turns one or more LAYERS.json into an image.

With --cache DIR (or $NIXOCI_CACHE), compressed digests are memoised by the
tar's digest: every layer is still streamed and hashed, but only the layers
whose tar changed since a build that used DIR are compressed. The output is
the same as without it; a summary of what the cache did goes to stderr.

Example:
   nixoci layers -o layers.json --max-layers 20 \
     --copy-to-root /nix/store/…-root $(nix-store -qR ./result)`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			graph := closure.FromPaths(o.Paths)
			if o.ClosureGraph != "" {
				var err error
				if graph, err = closure.LoadGraph(o.ClosureGraph); err != nil {
					return err
				}
			}
			perms, err := o.LoadPerms()
			if err != nil {
				return err
			}
			history, err := o.LoadHistory()
			if err != nil {
				return err
			}
			below, err := o.LoadExcluded(c.Context)
			if err != nil {
				return err
			}
			mtime, err := o.LoadMtime()
			if err != nil {
				return err
			}
			cache, err := o.OpenCache(logrus.StandardLogger())
			if err != nil {
				return err
			}
			layers, err := build.Layers(c.Context, graph, build.Options{
				MaxLayers:      o.MaxLayers,
				Roots:          o.Paths,
				CopyToRoot:     o.CopyToRoot.Value(),
				KeepDirlinks:   o.KeepDirlinks,
				OmitStorePaths: o.NoStorePaths,
				Mtime:          mtime,
				Ignore:         o.Ignore.Value(),
				Perms:          perms,
				Below:          below,
				Compression:    o.Compression,
				History:        history,
				TarDirectory:   o.TarDirectory,
				Log:            logrus.StandardLogger(),
				Cache:          cache,
			})
			if err != nil {
				return err
			}
			if err := layer.WriteFile(o.Output, layers); err != nil {
				return err
			}
			if cache != nil {
				fmt.Fprintf(c.App.ErrWriter, "nixoci layers: digest cache %s: %s\n", cache.Dir(), cache.Stats())
			}
			return nil
		},
	})
}
