package dockerload

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

// MaxLayers is the most layers an image can have in the Docker daemon's
// classic layer store (graph drivers such as overlay2): moby chains at most
// 125 layers (its layer.maxLayerDepth) and refuses the next with "max depth
// exceeded", but only after the whole archive was sent. `docker load` of a
// docker-archive fails the same way.
const MaxLayers = 125

// ErrTooManyLayers is wrapped by the error for an image with more layers
// than its destination can hold.
var ErrTooManyLayers = errors.New("too many layers for the destination")

// TooManyLayersError says that an image has more layers than its
// destination can hold. pkg/publish returns it for other destinations too.
type TooManyLayersError struct {
	// Image names the image, Layers is its layer count.
	Image  string
	Layers int
	// Limit is the most layers Destination (for people, such as "the
	// Docker daemon's layer store") holds.
	Limit       int
	Destination string
}

func (e *TooManyLayersError) Error() string {
	return fmt.Sprintf("image %s has %d layers, but %s holds at most %d: %v: make the image with at most %d layers (a smaller maxLayers, fewer buildLayer layers, or a base image with fewer layers)",
		e.Image, e.Layers, e.Destination, e.Limit, ErrTooManyLayers, e.Limit)
}

func (e *TooManyLayersError) Unwrap() error { return ErrTooManyLayers }

// CheckLayerCount returns a *TooManyLayersError when image, with layers
// layers, has more than limit; a limit of 0 or less is no limit.
func CheckLayerCount(image string, layers, limit int, destination string) error {
	if limit > 0 && layers > limit {
		return &TooManyLayersError{Image: image, Layers: layers, Limit: limit, Destination: destination}
	}
	return nil
}

// daemonStore is how the daemon's image store is named in messages.
const daemonStore = "the Docker daemon's layer store"

// daemonLayerLimit is the layer limit of the daemon info describes:
// MaxLayers for the classic layer store, 0 (none known) for the containerd
// image store, whose snapshotter has no such limit of its own.
func daemonLayerLimit(info system.Info) int {
	if ok, _ := skippingWorks(info); !ok {
		return 0
	}
	return MaxLayers
}

// LayerLimit asks the daemon (opts.Host, or the environment's) how many
// layers an image loaded into it may have: MaxLayers for the classic layer
// store, 0 when no limit is known (the containerd image store). An
// unreachable daemon is an error wrapping ErrUnreachable.
func LayerLimit(ctx context.Context, opts Options) (int, error) {
	clientOpts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.Host != "" {
		clientOpts = append(clientOpts, client.WithHost(opts.Host))
	}
	cli, err := client.NewClientWithOpts(clientOpts...)
	if err != nil {
		return 0, fmt.Errorf("connecting to the docker daemon: %w", err)
	}
	defer cli.Close()
	info, err := cli.Info(ctx)
	if err != nil {
		return 0, daemonError("asking the docker daemon for its layer limit", err)
	}
	return daemonLayerLimit(info), nil
}
