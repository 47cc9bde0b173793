# buildImage's extraCommands and fakeRootCommands (dockerTools' names and
# meaning): the derivation whose output is the image's root tree after the
# commands ran in it.
#
# Imported by ./default.nix with the tools the commands need, each a path
# (string or derivation) or null when not given:
#   runtimeShell  a POSIX shell, which runs the commands (`sh -e -c`);
#   coreutils     a directory holding bin/ with mkdir, chmod, ln, stat, …:
#                 the commands' PATH, and the `stat` that reads modes and
#                 owners under fakeroot;
#   fakeroot      a directory holding bin/fakeroot (fakeRootCommands);
#   proot         a directory holding bin/proot (enableFakechroot).
#
# RETURNS customise { fn; name; roots; keepContentsDirlinks; extraCommands;
# fakeRootCommands; enableFakechroot; }: a derivation run by
# `nixoci nix-build customise` with two outputs:
#   out    the copyToRoot paths `roots`, merged in order as the image's
#          layer merges them (a later file replaces an earlier one; see
#          keepContentsDirlinks), then changed by extraCommands (run in the
#          tree as the build user) and fakeRootCommands (run in the tree
#          under fakeroot, or with enableFakechroot under proot with the
#          tree as / and the Nix store bound in). PATH holds coreutils'
#          bin (and fakeroot's, proot's). Nothing else of stdenv is there:
#          refer to other tools by store path.
#   perms  a JSON file of perms entries for `out`: the modes the Nix store
#          resets (anything but 0444/0555 files and 0555 directories, such
#          as `chmod 1777 tmp`) and, with fakeRootCommands, every owner but
#          root (`chown 1000:1000 data`), so that the image shows them.
# The image's layer is then `out` relocated to / with these perms: still a
# layer of store paths, streamed when copied, with no tar kept.
{
  internal,
  runtimeShell,
  coreutils,
  fakeroot,
  proot,
}:
{
  fn,
  name,
  roots,
  keepContentsDirlinks,
  extraCommands,
  fakeRootCommands,
  enableFakechroot,
}:
let
  what = if extraCommands != "" then "extraCommands" else "fakeRootCommands";
  need =
    value: arg: desc: user:
    if value == null then
      throw "nixoci.${fn}: ${user} needs ${desc}: pass `${arg}` (or `pkgs`, which provides it) when importing nixoci's nix/ library"
    else
      internal.toPath value;
in
internal.mkBuild "customise" {
  name = "${internal.safeName name}-root";
  outputs = [
    "out"
    "perms"
  ];
  copyToRoot = roots;
  inherit
    keepContentsDirlinks
    extraCommands
    fakeRootCommands
    enableFakechroot
    ;
  shell = need runtimeShell "runtimeShell" "a POSIX shell" what;
  coreutils = need coreutils "coreutils" "a directory holding bin/ with coreutils (mkdir, chmod, stat, …)" what;
  fakeroot =
    if fakeRootCommands != "" then
      need fakeroot "fakeroot" "a directory holding bin/fakeroot" "fakeRootCommands"
    else
      null;
  proot =
    if fakeRootCommands != "" && enableFakechroot then
      need proot "proot" "a directory holding bin/proot" "enableFakechroot"
    else
      null;
}
