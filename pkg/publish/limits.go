package publish

import (
	"context"
	"strings"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/dockerload"
	nixtransport "github.com/nixoci/nixoci/transport/nix"
)

// OverlayMaxLayers is the most layers an image can have in
// containers-storage with the overlay driver: the driver refuses to mount
// more than 500 lower layers ("max depth exceeded"; documented in
// containers-storage-driver-overlay(5)), and a container of an image of N
// layers mounts N lower layers. The copy itself would succeed; running the
// image would not.
const OverlayMaxLayers = 500

// OldOverlayMaxLayers is the same limit in containers/storage before 1.44
// (podman 4.3 and older, as in Debian 12): images with more layers are
// copied with a warning, since the podman that runs them may be older
// than the library nixoci writes the store with.
const OldOverlayMaxLayers = 128

// layerCountProbe bounds how long counting the layers of a source that is
// not a nix: image (a registry, say) may take; past it the check is skipped
// and the destination reports what it reports.
const layerCountProbe = 30 * time.Second

// checkLayerCount refuses, before anything is copied, an image with more
// layers than dest can hold, where that limit is known: the Docker
// daemon's layer store (as the daemon says) and `docker load` of a
// docker-archive (dockerload.MaxLayers), containers-storage with the
// overlay driver (OverlayMaxLayers). Other destinations (registries, OCI
// layouts, dir:) have no limit of their own. The error is a
// *dockerload.TooManyLayersError. A source whose layers cannot be counted
// here is not refused: the copy then reports the source's own error.
func checkLayerCount(ctx context.Context, src, dest types.ImageReference, srcSys *types.SystemContext, log Logger) error {
	limit, where := 0, ""
	switch dest.Transport().Name() {
	case "docker-daemon":
		// Asked from the daemon only for an image over it.
		limit, where = dockerload.MaxLayers, "the Docker daemon's layer store"
	case "docker-archive":
		limit, where = dockerload.MaxLayers, "a docker-archive (docker load: the Docker daemon's layer store)"
	case "containers-storage":
		if storageDriver(dest) == "overlay" {
			limit, where = OverlayMaxLayers, "containers-storage with the overlay driver"
		}
	}
	if limit <= 0 {
		return nil
	}
	n, ok := layerCount(ctx, src, srcSys)
	if !ok {
		return nil
	}
	if limit == OverlayMaxLayers && n > OldOverlayMaxLayers && n <= limit {
		log.Warnf("image %s has %d layers: podman 4.3 and older (containers/storage before 1.44) cannot run images of more than %d layers (\"max depth exceeded\")", refString(src), n, OldOverlayMaxLayers)
	}
	if n <= limit {
		return nil
	}
	if dest.Transport().Name() == "docker-daemon" {
		var err error
		if limit, err = dockerload.LayerLimit(ctx, dockerload.Options{}); err != nil {
			return nil // the copy reports the daemon
		}
	}
	return dockerload.CheckLayerCount(refString(src), n, limit, where)
}

// layerCount is how many layers the image src names has: read from the
// descriptor for a nix: image (nothing is described or streamed), else
// from the image's manifest.
func layerCount(ctx context.Context, src types.ImageReference, sys *types.SystemContext) (int, bool) {
	if path, ok := nixtransport.DescriptorPath(src); ok {
		img, err := descriptor.LoadImage(path)
		if err != nil {
			return 0, false
		}
		return len(img.Layers), true
	}
	ctx, cancel := context.WithTimeout(ctx, layerCountProbe)
	defer cancel()
	img, err := src.NewImage(ctx, sys)
	if err != nil {
		return 0, false
	}
	defer img.Close()
	return len(img.LayerInfos()), true
}

// storageDriver is the graph driver of a containers-storage reference,
// whose string within the transport starts with [DRIVER@ROOT+RUNROOT…].
func storageDriver(ref types.ImageReference) string {
	s := ref.StringWithinTransport()
	if !strings.HasPrefix(s, "[") {
		return ""
	}
	spec, _, ok := strings.Cut(s[1:], "]")
	if !ok {
		return ""
	}
	driver, _, ok := strings.Cut(spec, "@")
	if !ok {
		return ""
	}
	return driver
}
