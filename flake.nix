{
  description = "nixoci: container images from Nix store paths, copied to registries and daemons without writing tarballs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      # Images hold Linux programs: examples are built on Linux only.
      forLinux = f: lib.genAttrs (lib.filter (lib.hasSuffix "-linux") systems) (system: f system nixpkgs.legacyPackages.${system});

      version = "0.1.0";

      # The hash of `go mod vendor`'s tree; tests/nix's TestVendorHash checks
      # it and prints the right value when go.mod or go.sum change.
      vendorHash = "sha256-Ukz0syyYict8bs3QJzGyfewUxeJcFvq8gi27w2n6iNc=";

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

      # nixoci built with pkgs. static = true gives a binary without cgo
      # (no sqlite blob-info cache, no rootless containers-storage), which
      # runAsRoot uses as the VM guest's init.
      mkNixoci =
        pkgs:
        {
          static ? false,
        }:
        pkgs.buildGoModule {
          pname = if static then "nixoci-static" else "nixoci";
          inherit version src vendorHash;
          subPackages = [ "cmd/nixoci" ];
          tags = [
            "containers_image_openpgp"
            "exclude_graphdriver_btrfs"
          ];
          env.CGO_ENABLED = if static then "0" else "1";
          ldflags = [
            "-s"
            "-w"
          ];
          # The tests need dockerd, a registry, Nix and skopeo: they run in CI.
          doCheck = false;
          # runAsRoot boots its VM with the static build as init.
          passthru = lib.optionalAttrs (!static) { static = mkNixoci pkgs { static = true; }; };
          meta = {
            description = "Build container images from Nix store paths and copy them without tarballs";
            mainProgram = "nixoci";
            platforms = lib.platforms.unix;
          };
        };

      # The nix/ library, instantiated with pkgs and its nixoci.
      mkLib =
        pkgs: nixociPackage:
        import ./nix {
          nixoci = nixociPackage;
          inherit pkgs;
        };
    in
    {
      packages = forAllSystems (
        system: pkgs: rec {
          nixoci = mkNixoci pkgs { };
          nixoci-static = mkNixoci pkgs { static = true; };
          default = nixoci;
        }
      );

      # `nixoci.lib.${system}.buildImage { … }`.
      lib = forAllSystems (system: pkgs: mkLib pkgs self.packages.${system}.nixoci);

      # Adds `nixoci` (the program) and `nixociLib` (the library) to nixpkgs.
      overlays.default = final: prev: {
        nixoci = mkNixoci final { };
        nixoci-static = mkNixoci final { static = true; };
        nixociLib = mkLib final final.nixoci;
      };

      # Example images: `nix run .#examples.x86_64-linux.hello.copyToDockerDaemon`.
      examples = forLinux (
        system: pkgs:
        import ./nix/examples.nix {
          inherit pkgs;
          nixoci = self.lib.${system};
        }
      );

      # The examples also as legacyPackages, so that in this repository
      # `nix run .#hello.copyToDockerDaemon` works.
      legacyPackages = forLinux (system: pkgs: self.examples.${system});

      # Building an example builds its descriptor: the packages, nixoci and
      # every layer's digests. Copying needs a destination, so it is not a check.
      checks = forAllSystems (
        system: pkgs:
        {
          inherit (self.packages.${system}) nixoci nixoci-static;
        }
        // lib.optionalAttrs (self.examples ? ${system}) (
          lib.filterAttrs (_: lib.isDerivation) self.examples.${system}
        )
      );

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            packages = [
              pkgs.go
              pkgs.gopls
              pkgs.skopeo
            ];
          };
        }
      );

      formatter = forAllSystems (system: pkgs: pkgs.nixfmt-rfc-style);
    };
}
