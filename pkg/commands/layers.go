package commands

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/descriptor"
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
			excluded, err := o.LoadExcluded()
			if err != nil {
				return err
			}
			plan, err := closure.Plan(graph, closure.PlanOptions{
				MaxLayers:  o.MaxLayers,
				Roots:      o.Paths,
				CopyToRoot: o.CopyToRoot.Value(),
				Exclude:    closure.ExcludeSet(excluded...),
				Ignore:     o.Ignore.Value(),
				Perms:      perms,
			})
			if err != nil {
				return err
			}
			specs := make([]layer.Spec, len(plan))
			for i, paths := range plan {
				specs[i] = layer.Spec{Paths: paths, Compression: o.Compression, History: history}
				if o.TarDirectory != "" {
					specs[i].TarFile = filepath.Join(o.TarDirectory, fmt.Sprintf("layer-%d.tar", i))
				}
			}
			layers, err := layer.DescribeAll(c.Context, specs)
			if err != nil {
				return err
			}
			return descriptor.Write(o.Output, &descriptor.Layers{Layers: layers})
		},
	})
}
