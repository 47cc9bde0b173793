# runAsRoot: run a script as root in a qemu VM over an image's layers and
# describe what it changed as one more layer.
#
# Imported by ./default.nix as
#
#   runAsRootLayer = import ./run-as-root.nix {
#     inherit nixoci pkgs system internal runtimeShell vmKernel vmModules qemu
#       runAsRootAccel requireKVM;
#   };
#
# TAKES (this file's arguments; null means "not given"):
#   nixoci        the nixoci derivation or path; `${nixoci}/bin/nixoci` is the
#                 builder, and also the VM's init unless `guestNixoci` is given.
#   pkgs          nixpkgs or null; the VM parts and `shadow` default from it.
#   system        the Nix system the builder runs on.
#   internal      ./internal.nix (helpers).
#   runtimeShell  path string of a POSIX shell or null. When it is a store
#                 path (pkgs.runtimeShell), a script without a `#!` line runs
#                 with it (and its closure is shown to the script), as in
#                 dockerTools; otherwise such a script runs with the image's
#                 /bin/sh.
#   vmKernel      path of the kernel image file the VM boots.
#                 Default: `${pkgs.linux}/${pkgs.stdenv.hostPlatform.linux-kernel.target}`
#                 (nixpkgs' default kernel, bzImage on x86_64).
#   vmModules     path of that kernel's module directory, the one holding
#                 modules.dep (virtio_pci, virtio_blk and overlay are loaded
#                 from it unless built in; .ko, .ko.xz, .ko.gz and .ko.zst).
#                 Default: `${pkgs.linux}/lib/modules/${pkgs.linux.modDirVersion}`.
#   qemu          path of the qemu-system-* binary.
#                 Default: `${pkgs.qemu_kvm}/bin/qemu-system-<cpu>`.
#   guestNixoci   (optional) a derivation or path holding bin/nixoci used as
#                 the VM's init. Default: `nixoci.static` when the nixoci
#                 derivation has one, else `nixoci` itself. A static build
#                 (CGO_ENABLED=0) is best; a dynamically linked one is copied
#                 into the VM with its ELF interpreter and libraries.
#   shadow        (optional) the shadow package, for `shadowSetup`.
#                 Default: `pkgs.shadow`.
#   runAsRootAccel (optional, default "auto") the default of the functor's
#                 `accel` (buildImage's runAsRootAccel): "auto", "kvm" or "tcg".
#   requireKVM    (optional, default false) the default of the functor's
#                 `requireKVM` (buildImage's requireKVM).
#
# RETURNS a callable attribute set (a functor):
#
#   runAsRootLayer {
#     name;               image name (for the derivation name)
#     image;              the image (a buildImage result: its image.json)
#                         whose layers, in order, make the script's root
#     script;             the runAsRoot text; a `#!` line is honoured
#     created;            RFC 3339 time of the layer's entries ("now": the image's)
#     compression;        "gzip", "zstd" or "none"
#     diskSize;           MiB of scratch space for the changes
#     buildVMMemorySize;  MiB of VM memory
#     timeout;            seconds the VM may run (a KVM attempt included)
#     accel ? runAsRootAccel;
#                         the VM's accelerator. "auto": KVM when /dev/kvm
#                         opens; when the VM does not come up under it
#                         (qemu exits, or the guest init does not report
#                         within 5 s) it runs again under TCG emulation, much
#                         slower, with one warning saying why. "kvm": KVM or
#                         fail, naming qemu's message or the missing boot
#                         report. "tcg": never tries KVM.
#     requireKVM ? requireKVM;
#                         true adds requiredSystemFeatures = [ "kvm" ], so
#                         that only machines with KVM build it and Nix
#                         sandboxes give the builder /dev/kvm, and implies
#                         accel "kvm" ("tcg" with it is an error).
#   }
#
#   gives a derivation whose output is a directory holding `layer.tar` (the
#   changes: new and changed files with the owner and mode the script left,
#   deletions as `.wh.NAME`, replaced directories with `.wh..wh..opq`, times
#   set to `created`; changes under /nix/store are left out, with one
#   warning) and `layers.json` (a `nixoci layers` document describing that
#   one layer, history created_by "runAsRoot"). Pass it to buildImage's
#   image step as the last of `layers`. The derivation fails, naming
#   diskSize, buildVMMemorySize or runAsRootTimeout where one of them was
#   too small, with the script's output when it exits non-zero, and with
#   the VM console's last lines when the VM does not boot.
#
#   The build log says in one line which accelerator the VM ran under and
#   its wall time.
#
#   and, as attributes of the functor:
#     shadowSetup   shell text for the start of a runAsRoot script: puts
#                   shadow's useradd/groupadd/... first in PATH and creates
#                   the minimal /etc/passwd, /etc/shadow, /etc/group,
#                   /etc/gshadow, /etc/login.defs and PAM config they need
#                   when the image has none. Needs `shadow` or `pkgs`.
#     vmParts       { vmKernel; vmModules; qemu; guestInit; } as resolved
#                   (each null when missing), for inspection and tests.
#     defaults      { runAsRootAccel; requireKVM; } as imported, checked:
#                   buildImage's defaults for its arguments of those names.
{
  nixoci,
  pkgs ? null,
  system,
  internal,
  runtimeShell ? null,
  vmKernel ? null,
  vmModules ? null,
  qemu ? null,
  guestNixoci ? null,
  shadow ? (if pkgs != null then pkgs.shadow else null),
  runAsRootAccel ? "auto",
  requireKVM ? false,
}:
let
  accels = [
    "auto"
    "kvm"
    "tcg"
  ];

  # Checks accel and requireKVM; fn names the function they were given to.
  checkAccel =
    fn: accelArg: accel: requireKVM:
    (
      builtins.elem accel accels
      || throw "${fn}: ${accelArg} must be \"auto\", \"kvm\" or \"tcg\", not ${internal.describe accel}"
    )
    && (
      builtins.isBool requireKVM
      || throw "${fn}: requireKVM must be true or false, not ${internal.describe requireKVM}"
    )
    && (
      !(requireKVM && accel == "tcg")
      || throw "${fn}: requireKVM = true needs KVM, so ${accelArg} must be \"auto\" or \"kvm\", not \"tcg\""
    );

  # The import's defaults for buildImage, checked when used.
  defaults =
    assert checkAccel "nixoci (import ./nix)" "runAsRootAccel" runAsRootAccel requireKVM;
    {
      inherit runAsRootAccel requireKVM;
    };

  cpu = builtins.head (builtins.split "-" system);

  kernelPath =
    if vmKernel != null then
      "${vmKernel}"
    else if pkgs != null then
      "${pkgs.linux}/${pkgs.stdenv.hostPlatform.linux-kernel.target}"
    else
      null;

  modulesPath =
    if vmModules != null then
      "${vmModules}"
    else if pkgs != null then
      "${pkgs.linux}/lib/modules/${pkgs.linux.modDirVersion}"
    else
      null;

  qemuPath =
    if qemu != null then
      "${qemu}"
    else if pkgs != null then
      "${pkgs.qemu_kvm}/bin/qemu-system-${cpu}"
    else
      null;

  guestInit =
    if guestNixoci != null then
      "${internal.toPath guestNixoci}/bin/nixoci"
    else if builtins.isAttrs nixoci && nixoci ? static then
      "${nixoci.static}/bin/nixoci"
    else
      "${nixoci}/bin/nixoci";

  need =
    value: arg: what:
    if value == null then
      throw "nixoci.buildImage: runAsRoot needs ${what}: pass `${arg}` (or `pkgs`, which provides it) when importing nixoci's nix/ library"
    else
      value;

  # The shell for scripts without #!: runtimeShell when it is a store path
  # (then shown to the script with its closure), else the image's /bin/sh.
  shellPath =
    if runtimeShell != null && internal.storePathsIn "${runtimeShell}" != [ ] then
      "${runtimeShell}"
    else
      "";

  mkLayer =
    {
      name,
      image,
      script,
      created ? "1970-01-01T00:00:01Z",
      compression ? "gzip",
      diskSize ? 1024,
      buildVMMemorySize ? 512,
      timeout ? 1800,
      accel ? defaults.runAsRootAccel,
      requireKVM ? defaults.requireKVM,
    }:
    let
      checked =
        (
          builtins.isString script && script != ""
          || throw "nixoci.buildImage: runAsRoot must be the script's text (a non-empty string), not ${internal.describe script}"
        )
        && (
          builtins.isInt diskSize && diskSize >= 1
          || throw "nixoci.buildImage: diskSize must be a positive integer (MiB of scratch space for runAsRoot), not ${internal.describe diskSize}"
        )
        && (
          builtins.isInt buildVMMemorySize && buildVMMemorySize >= 128
          || throw "nixoci.buildImage: buildVMMemorySize must be an integer of at least 128 (MiB of VM memory for runAsRoot), not ${internal.describe buildVMMemorySize}"
        )
        && (
          builtins.isInt timeout && timeout >= 1
          || throw "nixoci.buildImage: runAsRootTimeout must be a positive integer (seconds), not ${internal.describe timeout}"
        )
        && checkAccel "nixoci.buildImage" "runAsRootAccel" accel requireKVM;
      # Store paths the script (and its shell) mention: their closures are
      # shown under /nix/store in the VM.
      roots = internal.storePathsIn (script + " " + shellPath);
    in
    assert checked;
    builtins.derivation (
      {
        name = "${internal.safeName name}-run-as-root";
        inherit system;
        builder = internal.builder;
        args = [
          "nix-build"
          "run-as-root"
        ];
        __structuredAttrs = true;
        image = internal.toPath image;
        inherit
          script
          created
          compression
          diskSize
          buildVMMemorySize
          guestInit
          ;
        shell = shellPath;
        runAsRootTimeout = timeout;
        accel = if requireKVM then "kvm" else accel;
        vmKernel = need kernelPath "vmKernel" "a kernel image file (vmKernel)";
        vmModules = need modulesPath "vmModules" "the kernel's module directory, the one holding modules.dep (vmModules)";
        qemu = need qemuPath "qemu" "a qemu-system-* binary (qemu)";
        exportReferencesGraph.scriptClosure = roots;
      }
      // (if requireKVM then { requiredSystemFeatures = [ "kvm" ]; } else { })
    );

  # Written for this library (POSIX sh, no bashisms).
  shadowSetup =
    if shadow == null then
      throw "nixoci.shadowSetup needs the shadow package: pass `pkgs` when importing nixoci's nix/ library"
    else
      ''
        PATH=${internal.toPath shadow}/bin:$PATH
        export PATH
        mkdir -p /etc/pam.d
        if [ ! -e /etc/passwd ]; then
          printf 'root:x:0:0:root:/root:/bin/sh\n' > /etc/passwd
          printf 'root:!:1::::::\n' > /etc/shadow
        fi
        if [ ! -e /etc/group ]; then
          printf 'root:x:0:\n' > /etc/group
          printf 'root:x::\n' > /etc/gshadow
        fi
        [ -e /etc/login.defs ] || : > /etc/login.defs
        if [ ! -e /etc/pam.d/other ]; then
          printf '%s\n' \
            'account sufficient pam_unix.so' \
            'auth sufficient pam_rootok.so' \
            'password requisite pam_unix.so nullok yescrypt' \
            'session required pam_unix.so' > /etc/pam.d/other
        fi
      '';
in
{
  __functor = _self: mkLayer;
  inherit shadowSetup defaults;
  vmParts = {
    vmKernel = kernelPath;
    vmModules = modulesPath;
    qemu = qemuPath;
    inherit guestInit;
  };
}
