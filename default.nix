# nixoci without flakes: the nix/ library, instantiated with your nixpkgs
# and a nixoci built from this checkout.
#
#   let
#     pkgs = import <nixpkgs> { };
#     nixoci = import ./nixoci { inherit pkgs; };   # this repository
#   in
#   nixoci.buildImage { name = "hello"; config.Cmd = [ "${pkgs.hello}/bin/hello" ]; }
#
# Every argument of ./nix/default.nix may be given too (system,
# runtimeShell, nix, cacert, coreutils, fakeroot, proot, shadow, vmKernel,
# vmModules, qemu).
{
  # nixpkgs, any release from 24.05 on. Default: <nixpkgs>.
  pkgs ? import <nixpkgs> { },

  # The nixoci program: a derivation or path holding bin/nixoci. Default:
  # built from this checkout with pkgs (./package.nix), which needs Go 1.25
  # (nixpkgs 25.11 or later); with an older pkgs, pass one built elsewhere.
  nixoci ? pkgs.callPackage ./package.nix { },
  ...
}@args:
import ./nix (
  builtins.removeAttrs args [
    "pkgs"
    "nixoci"
  ]
  // {
    inherit pkgs nixoci;
  }
)
// {
  # The nixoci package the library runs (the library's own `nixoci`
  # attribute is its path as a string).
  package = nixoci;
}
