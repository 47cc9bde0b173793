package dockerload

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/image"
	digest "github.com/opencontainers/go-digest"
)

// chainIDs returns the chain ID of every prefix of diffIDs: the first layer's
// chain ID is its diff_id, and each later one is the sha256 of
// "<parent chain ID> <diff_id>". Docker keys its layer store by these.
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// daemonChains returns the set of layer chain IDs that the daemon's images
// are made of. A layer whose chain ID is in the set is in the daemon's layer
// store, so a load does not need its bytes.
func daemonChains(ctx context.Context, cli daemon) (map[digest.Digest]bool, error) {
	images, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing daemon images: %w", err)
	}
	have := map[digest.Digest]bool{}
	for _, s := range images {
		insp, err := cli.ImageInspect(ctx, s.ID)
		if err != nil {
			// The image may have been removed since it was listed; its
			// layers then do not count as present.
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		diffIDs := make([]digest.Digest, 0, len(insp.RootFS.Layers))
		for _, l := range insp.RootFS.Layers {
			d, err := digest.Parse(l)
			if err != nil {
				break
			}
			diffIDs = append(diffIDs, d)
		}
		for _, c := range chainIDs(diffIDs) {
			have[c] = true
		}
	}
	return have, nil
}
