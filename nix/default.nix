# The nixoci Nix library.
#
#   nixoci = import ./nix { nixoci = <derivation or path holding bin/nixoci>; pkgs = <nixpkgs, optional>; };
#   image = nixoci.buildImage { name = "hello"; config.Cmd = [ "${hello}/bin/hello" ]; };
#
# Every derivation this library makes runs `nixoci nix-build <kind>` as its
# builder (structured attributes, `.attrs.json`), so it needs no stdenv, no
# shell and no jq, and is written with `builtins` only. A build writes small
# JSON descriptors; layer bytes are streamed from the store when an image is
# copied (`nixoci copy`, or the copyTo* scripts in each image's passthru).
#
# What only nixpkgs can give is taken from `pkgs` when it is passed, and can
# be passed on its own instead (for example
# `import ./nix { nixoci = ./prebuilt; runtimeShell = "/bin/sh"; nix = "/usr"; }`).
# A feature that needs a missing one fails at evaluation, naming the argument.
{
  # A derivation, store path or path whose `bin/nixoci` is the nixoci binary.
  # It is the builder of every derivation here and the program the copy
  # scripts run. Required.
  nixoci,

  # nixpkgs, optional. When given, `system`, `runtimeShell`, `nix`, `cacert`
  # and the runAsRoot VM parts default to its packages.
  pkgs ? null,

  # The Nix system the builders run on ("x86_64-linux", ...). Default:
  # `pkgs`' host system, else the evaluating machine's (`builtins.currentSystem`,
  # which pure evaluation such as flakes does not have: pass `system` or `pkgs` there).
  system ? (if pkgs != null then pkgs.stdenv.hostPlatform.system else builtins.currentSystem),

  # Path string of a POSIX shell, used as the interpreter of the copyTo*
  # and getManifest scripts. Default: `pkgs.runtimeShell`; without `pkgs`,
  # scripts fail at evaluation until it is passed.
  runtimeShell ? (if pkgs != null then pkgs.runtimeShell else null),

  # A derivation or path holding `bin/nix-store`, used at build time by
  # `initializeNixDatabase` to write the image's Nix database. Default:
  # `pkgs.nix`; without `pkgs` that feature fails at evaluation until it is passed.
  nix ? (if pkgs != null then pkgs.nix else null),

  # A derivation or path holding `etc/ssl/certs/ca-bundle.crt`, handed to the
  # pulling derivations as SSL_CERT_FILE (sandboxed builds see no /etc/ssl).
  # Default: `pkgs.cacert`; null leaves the system's certificates in use.
  cacert ? (if pkgs != null then pkgs.cacert else null),

  # The runAsRoot VM parts, handed to ./run-as-root.nix, which documents them
  # and takes their defaults from `pkgs` when they are null:
  # the kernel image file, the kernel's module directory (holding modules.dep),
  # and the qemu-system-* binary.
  vmKernel ? null,
  vmModules ? null,
  qemu ? null,

  # The default of buildImage's runAsRootAccel: the runAsRoot VM's
  # accelerator, "auto" (KVM when /dev/kvm opens, falling back to TCG
  # emulation, with one warning, when the VM does not come up under it),
  # "kvm" (KVM or fail) or "tcg" (never tries KVM). Default: "auto".
  runAsRootAccel ? "auto",

  # The default of buildImage's requireKVM: true makes runAsRoot
  # derivations require the "kvm" system feature (so only machines with KVM
  # build them, and sandboxes give them /dev/kvm) and implies
  # runAsRootAccel = "kvm". Default: false.
  requireKVM ? false,

  # The tools of buildImage's extraCommands and fakeRootCommands (see
  # ./customise.nix), each a derivation or path: a directory whose bin/
  # holds coreutils (mkdir, chmod, ln, stat, …), one whose bin/ holds
  # fakeroot, and one whose bin/ holds proot (enableFakechroot). Default:
  # `pkgs.coreutils`, `pkgs.fakeroot`, `pkgs.proot`; without `pkgs`, the
  # feature that needs one fails at evaluation until it is passed (for
  # example `coreutils = "/usr"; fakeroot = "/usr";` on Debian).
  coreutils ? (if pkgs != null then pkgs.coreutils else null),
  fakeroot ? (if pkgs != null then pkgs.fakeroot else null),
  proot ? (if pkgs != null then pkgs.proot else null),

  # The shadow package (useradd, groupadd, …) that `shadowSetup` puts in
  # PATH. Default: `pkgs.shadow`.
  shadow ? (if pkgs != null then pkgs.shadow else null),

  # Digest cache: an absolute path string of a directory (such as
  # "/var/cache/nixoci") where the layer and image builders memoise
  # compression, keyed by each layer's tar digest and the compressor, so that
  # a rebuild compresses only the layers that changed. Every layer's tar is
  # still streamed and hashed, and the descriptors are byte for byte those
  # of a build without it (only the derivations differ, by this attribute).
  # The directory must exist and be writable by the build users; with the
  # sandbox on, list it in nix.conf's `extra-sandbox-paths`, as for
  # ccacheStdenv. Whoever can write it can make builds record wrong
  # compressed digests: read the README's digest cache section (set-up and
  # trust model) first. Default: null, no cache.
  digestCache ? null,
}:
let
  internal = import ./internal.nix { inherit nixoci system; };

  # The attribute that hands digestCache to the layer and image builders:
  # none when it is off, so that those derivations stay as they were.
  digestCacheAttrs =
    if digestCache == null then
      { }
    else if
      (builtins.isString digestCache || builtins.isPath digestCache)
      && builtins.substring 0 1 (toString digestCache) == "/"
      && !(builtins.isString digestCache && builtins.hasContext digestCache)
    then
      { digestCache = toString digestCache; }
    else
      throw "nixoci (import ./nix): digestCache must be an absolute path string of a directory outside the store, such as \"/var/cache/nixoci\", not ${internal.describe digestCache}";

  shell =
    fn:
    if runtimeShell == null then
      throw "nixoci.${fn}: the scripts need a POSIX shell: pass `runtimeShell` (a path string such as \"/bin/sh\") or `pkgs` when importing nixoci's nix/ library"
    else
      "${runtimeShell}";

  scripts = import ./scripts.nix { inherit internal nixoci shell; };

  layer = import ./layer.nix { inherit internal digestCacheAttrs; };

  pull = import ./pull.nix {
    inherit
      internal
      nixoci
      cacert
      scripts
      ;
  };

  runAsRootLayer = import ./run-as-root.nix {
    inherit
      nixoci
      pkgs
      system
      internal
      runtimeShell
      vmKernel
      vmModules
      qemu
      runAsRootAccel
      requireKVM
      shadow
      ;
  };

  customise = import ./customise.nix {
    inherit
      internal
      runtimeShell
      coreutils
      fakeroot
      proot
      ;
  };

  image = import ./image.nix {
    inherit
      internal
      scripts
      nix
      runAsRootLayer
      customise
      digestCacheAttrs
      ;
  };

  # dockerTools' archive functions: streamLayeredImage, buildLayeredImage,
  # exportImage, mergeImages (./archive.nix).
  archive = import ./archive.nix {
    inherit internal nixoci shell;
    inherit (image) buildImage;
  };

  # dockerTools' helper packages, from `pkgs`.
  fromDockerTools =
    name:
    if pkgs != null then
      pkgs.dockerTools.${name}
    else
      throw "nixoci.${name} is dockerTools.${name} from nixpkgs: pass `pkgs` when importing nixoci's nix/ library";

  # buildImageIndex (./index.nix): one image per platform, copied as an
  # OCI image index.
  index = import ./index.nix { inherit internal scripts; };
in
{
  inherit (image) buildImage;
  inherit (index) buildImageIndex;
  inherit (layer) buildLayer;

  # dockerTools.buildImageWithNixDb: buildImage with a Nix database of the
  # image's store paths (initializeNixDatabase = true).
  buildImageWithNixDb = args: image.buildImage (args // { initializeNixDatabase = true; });
  inherit (pull) pullImage pullImageFromManifest;
  inherit (archive)
    streamLayeredImage
    buildLayeredImage
    exportImage
    mergeImages
    ;

  # The nixoci the library was instantiated with (a path string with context).
  nixoci = "${nixoci}";

  # Shell text for the start of a runAsRoot script that needs useradd,
  # groupadd and the like (from `pkgs.shadow`); see ./run-as-root.nix.
  shadowSetup = runAsRootLayer.shadowSetup;

  # Writes an executable script `bin/<name>` (interpreted by `runtimeShell`)
  # without stdenv: `writeScript { name = "hi"; text = "echo hi"; }`.
  # The result has meta.mainProgram, so `nix run` runs it.
  writeScript = scripts.writeScript;

  # dockerTools' helper packages, re-exported when `pkgs` is given (for
  # copyToRoot): fakeNss (/etc/passwd, /etc/group with root and nobody),
  # binSh (/bin/sh, bash), usrBinEnv (/usr/bin/env) and caCertificates
  # (the CA bundle where distributions look for it).
  fakeNss = fromDockerTools "fakeNss";
  binSh = fromDockerTools "binSh";
  usrBinEnv = fromDockerTools "usrBinEnv";
  caCertificates = fromDockerTools "caCertificates";
}
