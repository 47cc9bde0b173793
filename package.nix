# The nixoci program, built with nixpkgs' buildGoModule:
#
#   nixoci = pkgs.callPackage ./package.nix { };             # cgo on
#   nixoci-static = pkgs.callPackage ./package.nix { static = true; };
#
# go.mod asks for Go 1.25: nixpkgs 25.11 or later, where it is the default
# Go (or any nixpkgs with buildGo125Module). An older nixpkgs fails here at
# evaluation; the nix/ library itself works with nixpkgs 24.05 and later
# when given a nixoci built elsewhere.
{
  lib,
  go,
  buildGoModule,
  # Used when the default Go is older than 1.25. Default: none.
  buildGo125Module ? null,
  # true builds without cgo: a static binary (no sqlite blob-info cache, no
  # rootless containers-storage), which runAsRoot uses as the VM's init.
  static ? false,
  # The hash of `go mod vendor`'s tree. It is written once, in flake.nix
  # (tests/nix's TestVendorHash checks it and prints the right value when
  # go.mod or go.sum change); the default reads it from there.
  vendorHash ?
    builtins.head (
      builtins.match ''.*vendorHash = "(sha256-[A-Za-z0-9+/=]+)";.*'' (builtins.readFile ./flake.nix)
    ),
}:
let
  version = "0.1.0";

  builder =
    if lib.versionAtLeast go.version "1.25" then
      buildGoModule
    else if buildGo125Module != null then
      buildGo125Module
    else
      throw "nixoci: building nixoci needs Go 1.25 or later (go.mod), but this nixpkgs (${lib.version}) has Go ${go.version} and no buildGo125Module: use nixpkgs 25.11 or later, or build nixoci with nixoci's own pinned nixpkgs (do not make its nixpkgs input follow yours) and pass your pkgs to the library only";

  # Until nixpkgs 24.11, buildGoModule takes CGO_ENABLED as an argument
  # and refuses it in env; later releases want env.CGO_ENABLED (25.11
  # refuses the argument).
  cgo =
    enabled:
    let
      value = if enabled then "1" else "0";
    in
    if (lib.functionArgs builder) ? CGO_ENABLED then { CGO_ENABLED = value; } else { env.CGO_ENABLED = value; };

  mk =
    static:
    builder (
      {
        pname = if static then "nixoci-static" else "nixoci";
        inherit version;
        # The Go sources only, so that editing docs or nix/ does not rebuild.
        src = lib.fileset.toSource {
          root = ./.;
          fileset = lib.fileset.unions [
            ./go.mod
            ./go.sum
            ./cmd
            ./pkg
            (lib.fileset.maybeMissing ./transport)
            (lib.fileset.maybeMissing ./internal)
          ];
        };
        inherit vendorHash;
        subPackages = [ "cmd/nixoci" ];
        tags = [
          "containers_image_openpgp"
          "exclude_graphdriver_btrfs"
        ];
        ldflags = [
          "-s"
          "-w"
        ];
        # The tests need dockerd, a registry, Nix and skopeo: they run in CI.
        doCheck = false;
        # runAsRoot boots its VM with the static build as init.
        passthru = lib.optionalAttrs (!static) { static = mk true; };
        meta = {
          description = "Build container images from Nix store paths and copy them without tarballs";
          mainProgram = "nixoci";
          platforms = lib.platforms.unix;
        };
      }
      // cgo (!static)
    );
in
mk static
