#!/usr/bin/env bash
# Runs every check and test of nixoci. Expects the components that
# scripts/setup-debian.sh installs and starts (dockerd, docker-registry on
# 127.0.0.1:5000, nix, skopeo, podman, umoci, qemu and a kernel).
set -euo pipefail
cd "$(dirname "$0")/.."

export GOTOOLCHAIN=local
export NIXOCI_TEST_REGISTRY=${NIXOCI_TEST_REGISTRY:-127.0.0.1:5000}
export NIXOCI_TEST_REGISTRY_LOG=${NIXOCI_TEST_REGISTRY_LOG:-/var/lib/nixoci-test/registry.log}
tags='containers_image_openpgp exclude_graphdriver_btrfs'

echo "== go.mod go line"
goline=$(awk '$1 == "go" {print $2; exit}' go.mod)
max=1.25.0
if [ "$(printf '%s\n%s\n' "$goline" "$max" | sort -V | tail -1)" != "$max" ]; then
	echo "go.mod says go $goline, above $max: the pinned nixpkgs ships Go 1.25 and buildGoModule would refuse it" >&2
	exit 1
fi
echo "go $goline <= $max"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi

echo "== go vet"
go vet -tags "$tags" ./...

echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags "$tags" ./...

echo "== go test"
# tests/vm runs on its own with -v, so that the runAsRoot VM's wall time is shown.
go test -tags "$tags" -timeout 60m -count=1 $(go list ./... | grep -v '/tests/vm$')
echo "== go test -v ./tests/vm (runAsRoot in a VM)"
go test -tags "$tags" -timeout 30m -count=1 -v ./tests/vm

echo "== fuzz"
# Each target runs for a bounded time; a crasher fails the run and is kept
# in the package's testdata/fuzz/<target>/ for `go test` to replay.
fuzztime=${NIXOCI_FUZZTIME:-20s}
for target in \
	./pkg/closure:FuzzParseGraph \
	./pkg/closure:FuzzPlan \
	./pkg/closure:FuzzParsePerms \
	./pkg/tarstream:FuzzNormalise \
	./pkg/tarstream:FuzzHeader \
	./pkg/descriptor:FuzzLoadDescriptor; do
	pkg=${target%%:*} name=${target##*:}
	echo "-- $name ($pkg, $fuzztime)"
	go test -tags "$tags" -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg"
done

echo "== benchmarks (bench/: ratios to sha256sum, peak RSS, push times)"
go test -tags "$tags" -run '^$' -bench . -benchtime 1x -timeout 30m -count=1 ./bench/
