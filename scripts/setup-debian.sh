#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) for building and testing nixoci:
# installs the real components the tests use and starts the daemons on
# loopback only. Safe to run again: it installs and starts only what is missing.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "setup-debian.sh: run as root (sudo bash scripts/setup-debian.sh)" >&2
	exit 1
fi

state=/var/lib/nixoci-test
mkdir -p "$state"

packages=(
	ca-certificates git curl
	docker.io          # dockerd + docker CLI: docker-daemon: and docker-archive: destinations
	docker-registry    # a registry on 127.0.0.1 for end-to-end tests
	nix-bin            # Nix 2.8: builds with the nix/ library
	skopeo podman umoci # independent checkers (containers-storage via podman)
	busybox-static     # a static busybox makes runnable test images
	fakeroot proot     # buildImage's fakeRootCommands and enableFakechroot in tests/nix
	qemu-system-x86 linux-image-cloud-amd64 # runAsRoot VM step
	uidmap
)
missing=()
for p in "${packages[@]}"; do
	case "$p" in \#*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	# Keep the packages' own services (dockerd with its default bridge and
	# iptables rules, a registry with Debian's default config) from starting:
	# this script starts them below, on loopback only.
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' > "$policy"
		chmod +x "$policy"
		own_policy=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	if [ -n "$own_policy" ]; then rm -f "$policy"; trap - EXIT; fi
fi

# Nix: single-user as root, no sandbox, no binary cache (none is reachable).
mkdir -p /etc/nix
cat > /etc/nix/nix.conf <<'CONF'
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
CONF

# containers-storage: the same driver for our library and for podman.
mkdir -p /etc/containers
if [ ! -f /etc/containers/storage.conf ] || ! grep -q nixoci /etc/containers/storage.conf; then
	cat > /etc/containers/storage.conf <<'CONF'
# written by nixoci scripts/setup-debian.sh
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
fi
if [ ! -f /etc/containers/policy.json ]; then
	echo '{"default":[{"type":"insecureAcceptAnything"}]}' > /etc/containers/policy.json
fi

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	for _ in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
	echo "setup: $what did not come up" >&2
	return 1
}

# dockerd, without touching the host network.
if ! docker info >/dev/null 2>&1; then
	echo "setup: starting dockerd"
	nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$state/dockerd.log" 2>&1 &
	wait_for 60 dockerd docker info || { tail -20 "$state/dockerd.log" >&2; exit 1; }
fi

# A registry on 127.0.0.1:5000 whose log counts uploads.
if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
	echo "setup: starting docker-registry on 127.0.0.1:5000"
	mkdir -p "$state/registry"
	cat > "$state/registry.yml" <<CONF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
CONF
	nohup docker-registry serve "$state/registry.yml" >"$state/registry.log" 2>&1 &
	wait_for 30 docker-registry curl -fsS http://127.0.0.1:5000/v2/ || { tail -20 "$state/registry.log" >&2; exit 1; }
fi
echo "setup: ready (dockerd, docker-registry on 127.0.0.1:5000, nix $(nix --version | awk '{print $NF}'))"
