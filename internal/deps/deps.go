// Package deps pins the modules that several packages use while they are
// being written in parallel; it is removed once they import them directly.
package deps

import (
	_ "github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/docker/docker/client"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/klauspost/compress/gzip"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/sirupsen/logrus"
	_ "github.com/urfave/cli/v2"
	_ "github.com/vbauerster/mpb/v8"
	_ "go.podman.io/image/v5/copy"
	_ "go.podman.io/image/v5/docker/daemon"
	_ "go.podman.io/image/v5/pkg/blobinfocache"
	_ "go.podman.io/image/v5/signature"
	_ "go.podman.io/image/v5/storage"
	_ "go.podman.io/image/v5/transports/alltransports"
	_ "go.podman.io/storage/pkg/reexec"
	_ "golang.org/x/sys/unix"
)
