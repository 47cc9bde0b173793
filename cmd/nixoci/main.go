// Command nixoci builds container image descriptors from Nix store paths and
// copies the images they describe to registries, the Docker daemon, Podman and
// OCI layouts without writing an image tarball.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixoci/nixoci/pkg/commands"
	"github.com/nixoci/nixoci/pkg/guest"
	"go.podman.io/storage/pkg/reexec"
)

func main() {
	if reexec.Init() {
		return
	}
	// Inside the runAsRoot VM this binary is PID 1; the guest takes over.
	if guest.Init() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := commands.New().RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nixoci: %s\n", commands.FormatError(err))
		os.Exit(1)
	}
}
