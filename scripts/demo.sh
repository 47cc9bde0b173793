#!/usr/bin/env bash
# A tour of nixoci's main job, run after scripts/setup-debian.sh on a fresh
# Debian machine (as root): build an image with the Nix library, push it to
# the local registry, load it into Docker and run it; then change one file
# and go round the dev cycle again (rebuild with the digest cache, repush,
# reload, run), printing each step's time and which blobs were uploaded
# and which skipped.
#
# Safe to run again: every run edits the application anew. It stops at the
# first error.
#
# Environment:
#   NIXOCI_DEMO_DIR       work directory, kept between runs (default /var/tmp/nixoci-demo)
#   NIXOCI_DEMO_REGISTRY  registry host:port (default 127.0.0.1:5000, plain HTTP)
set -euo pipefail
trap 'echo "demo.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${NIXOCI_DEMO_DIR:-/var/tmp/nixoci-demo}
registry=${NIXOCI_DEMO_REGISTRY:-127.0.0.1:5000}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
tags='containers_image_openpgp exclude_graphdriver_btrfs'

die() { echo "demo.sh: $*" >&2; exit 1; }
for tool in go nix-build nix-store docker curl; do
	command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup-debian.sh first (go must be installed separately)"
done
[ -x /bin/busybox ] || die "/bin/busybox is missing: run scripts/setup-debian.sh first (busybox-static)"
curl -fsS "http://$registry/v2/" >/dev/null || die "no registry answers at http://$registry/v2/: run scripts/setup-debian.sh first"
docker info >/dev/null 2>&1 || die "dockerd is not running: run scripts/setup-debian.sh first"
mkdir -p "$work"

# Timing: step NAME COMMAND... runs the command with its output indented,
# then prints its wall time.
now() { date +%s.%N; }
step() {
	local name=$1; shift
	echo
	echo "── $name"
	echo "   \$ $*"
	local start; start=$(now)
	"$@" 2>&1 | sed 's/^/   │ /'
	local took; took=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
	echo "   took ${took} s"
	summary+=("$(printf '%-44s %7s s' "$name" "$took")")
}
summary=()

# Counts the layers sent and skipped in the last copy's report
# ($work/last.log): one line per blob, "done"/"loaded" or "skipped".
counts() {
	local sent skipped
	sent=$(grep -cE '^(blob|layer) .*: (done|loaded) \(' "$work/last.log" || true)
	skipped=$(grep -cE '^(blob|layer) .*: skipped: already exists' "$work/last.log" || true)
	echo "   → layers: $sent sent, $skipped skipped (already there)"
	summary[${#summary[@]}-1]+="   layers: $sent sent, $skipped skipped"
}

echo "nixoci demo: work directory $work, registry $registry"

# nixoci, built from this checkout and added to the Nix store, where the
# library's derivations run it as their builder.
build_nixoci() {
	rm -rf "$work/nixoci"
	go build -C "$repo" -tags "$tags" -o "$work/nixoci/bin/nixoci" ./cmd/nixoci
	nix-store --add "$work/nixoci" > "$work/nixoci.path"
	echo "built $(cat "$work/nixoci.path")/bin/nixoci"
}
step "build nixoci (go build) into the store" build_nixoci
nixoci=$(cat "$work/nixoci.path")

# busybox: the demo closure's one real program (no nixpkgs here).
add_busybox() {
	rm -rf "$work/busybox"
	mkdir -p "$work/busybox/bin"
	cp /bin/busybox "$work/busybox/bin/busybox"
	ln -s busybox "$work/busybox/bin/sh"
	nix-store --add "$work/busybox" > "$work/busybox.path"
	cat "$work/busybox.path"
}
step "add busybox to the store" add_busybox
busybox=$(cat "$work/busybox.path")

# The digest cache: compressed digests of the layers built so far. With the
# sandbox on, it would also go in nix.conf's extra-sandbox-paths; setup
# turns the sandbox off.
cache="$work/digest-cache"
mkdir -p "$cache"
entries() { find "$cache" -path '*/entries/*' -type f | wc -l; }

# Each run edits the application anew, so the dev cycle below really
# rebuilds something.
edit=$(cat "$work/edit" 2>/dev/null || echo 0)
message() { echo "hello from nixoci, edit $1"; }
image="$registry/nixoci-demo:latest"

build_image() { # build_image MESSAGE: the image descriptor, in $work/image
	local before; before=$(entries)
	nix-build "$repo/scripts/demo.nix" -o "$work/image" \
		--argstr nixoci "$nixoci" --argstr busybox "$busybox" --argstr registry "$registry" \
		--argstr digestCache "$cache" --argstr message "$1"
	echo "descriptor: $(readlink "$work/image")"
	"$nixoci/bin/nixoci" inspect "nix:$work/image" | sed -n '/^Layers/,$p' | grep -E '^Layers|^ +[0-9]+\. |/nix/store/'

	echo "digest cache: $before entries before, $(entries) after (a new entry is a layer compressed for the first time)"
}
push() {
	"$nixoci/bin/nixoci" copy --dest-tls-verify=false "nix:$work/image" "docker://$image" | tee "$work/last.log"
}
load() {
	"$nixoci/bin/nixoci" copy "nix:$work/image" "docker-daemon:$image" | tee "$work/last.log"
}
run() { # run MESSAGE: the container must print it
	docker run --rm --network none "$image" | tee "$work/last.log"
	grep -qxF "$1" "$work/last.log" || die "the container did not print \"$1\""
}

echo
echo "════ 1. Build an image with the Nix library, push it, load it into Docker, run it"
step "nix-build scripts/demo.nix (3 layers)" build_image "$(message "$edit")"
step "push to $registry (nixoci copy)" push
counts
step "load into Docker (nixoci copy docker-daemon:)" load
counts
step "docker run --rm --network none" run "$(message "$edit")"

edit=$((edit + 1))
echo "$edit" > "$work/edit"
echo
echo "════ 2. The dev cycle: the application's message changed (edit $edit); rebuild, repush, reload, run"
echo "   Only the application's layer is new: it alone is compressed (the digest"
echo "   cache knows the others), uploaded and loaded; the other layers are skipped."
step "rebuild (nix-build, digestCache)" build_image "$(message "$edit")"
step "repush to $registry" push
counts
step "reload into Docker" load
counts
step "docker run --rm --network none" run "$(message "$edit")"

echo
echo "════ Summary"
printf '%s\n' "${summary[@]}"
echo
echo "demo.sh: done. Run it again to go round the dev cycle once more."
