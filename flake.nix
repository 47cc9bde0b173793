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

      # The hash of `go mod vendor`'s tree; tests/nix's TestVendorHash checks
      # it and prints the right value when go.mod or go.sum change.
      # ./package.nix reads it from here when called without flakes.
      vendorHash = "sha256-Ukz0syyYict8bs3QJzGyfewUxeJcFvq8gi27w2n6iNc=";

      # nixoci built with pkgs (./package.nix: Go 1.25, so nixpkgs 25.11 or
      # later when nixpkgs follows yours). static = true gives a binary
      # without cgo (no sqlite blob-info cache, no rootless
      # containers-storage), which runAsRoot uses as the VM guest's init.
      mkNixoci =
        pkgs:
        {
          static ? false,
        }:
        pkgs.callPackage ./package.nix { inherit static vendorHash; };

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

      # The library with your nixpkgs (any release from 24.05 on) and the
      # nixoci built with this flake's own nixpkgs, for projects whose
      # nixpkgs is too old to build nixoci (Go 1.25):
      # `nixoci.libFor pkgs`, with nixoci's nixpkgs input not following yours.
      libFor = pkgs: mkLib pkgs self.packages.${pkgs.stdenv.hostPlatform.system}.nixoci;

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
