# buildImage: an image descriptor (image.json) built from store paths.
{
  internal,
  scripts,
  nix,
  runAsRootLayer,
  # ./customise.nix, instantiated: extraCommands and fakeRootCommands.
  customise,

  # { digestCache = "/dir"; } when the library's digestCache is set, else
  # { } (see ./default.nix): added to the builder's attributes.
  digestCacheAttrs ? { },
}:
let
  inherit (internal) toPath toList describe;
  mkBuild = kind: attrs: internal.mkBuild kind (attrs // digestCacheAttrs);

  # The derivation that runs `nixoci nix-build image` and its passthru.
  mkImage =
    {
      fn,
      name,
      tag,
      meta,
      attrs,
    }:
    let
      drv = mkBuild "image" (
        {
          name = "image-${internal.safeName name}.json";
          imageName = name;
          imageTag = tag;
        }
        // attrs
      );
      # The tag: as given, else the hash part of the output path.
      imageTag =
        if tag != null then
          tag
        else
          builtins.substring 0 32 (baseNameOf (builtins.unsafeDiscardStringContext drv.outPath));
      image = drv // {
        inherit meta;
        # Marks images, so that fromImage accepts them.
        isNixociImage = true;
        imageName = name;
        inherit imageTag;
        # name:tag, without the image as a dependency (for use in strings
        # that must not pull the image into a closure).
        imageRefUnsafe = builtins.unsafeDiscardStringContext "${name}:${imageTag}";
      }
      // scripts.copyScripts {
        inherit fn image;
        imageName = name;
        inherit imageTag;
      };
    in
    image;

  # Builds an image descriptor: a store path holding one small JSON file that
  # lists the image's layers (store paths and their digests) and config. No
  # layer tar is written; `nixoci copy` (run by the copyTo* scripts in
  # passthru) streams the layers from the store.
  #
  # Passthru: imageName, imageTag, imageRefUnsafe ("name:tag"), and scripts
  # runnable with `nix run`: copyToRegistry (to docker://name:tag),
  # copyToDockerDaemon (docker-daemon:name:tag), copyToPodman
  # (containers-storage:name:tag) and copyTo (destination as first argument).
  # Further arguments are passed to `nixoci copy` (for example
  # `--dest-tls-verify=false` or `--dest-creds user:pass`), and buildArgs
  # (the arguments), `passthru`'s attributes and `override` (as nixpkgs'
  # makeOverridable gives it).
  #
  # dockerTools' argument names are accepted with dockerTools' meaning
  # (architecture, compressor, includeNixDB, contents, extraCommands, …).
  buildImageFn =
    args@{
      # Image name, as in "registry.example.com/team/app"; lower-cased.
      name,

      # Image tag. Default: the hash part of the output path, so that every
      # different image gets a different tag.
      tag ? null,

      # The OCI image config (Env, Cmd, Entrypoint, WorkingDir, User,
      # ExposedPorts, Labels, Volumes, StopSignal, ...). Every store path it
      # mentions is put in the image with its closure. Default: empty.
      config ? { },

      # Store paths (a derivation or a list) whose content is placed at the
      # image root `/` (for example an environment with bin/ and etc/). Their
      # dependencies go under /nix/store, and so does a path that anything
      # in the image refers to, itself included (a makeWrapper wrapper
      # execs a file of its own store path). They merge in list order, as
      # dockerTools copies them: a later file or symlink replaces an
      # earlier one (one warning each in the build log, none for identical
      # ones); a directory against a file is an error. Default: none.
      copyToRoot ? null,

      # The older dockerTools name of copyToRoot. Give one or the other (an
      # empty list or null for the other is fine).
      contents ? null,

      # dockerTools: when copyToRoot paths collide at a symlink to a
      # directory, true keeps the symlink (`rsync -K`): against a directory
      # that is an error, against another symlink the later one wins.
      # false (default) merges it as the directory it points to (`rsync -k`).
      # Symlinks nothing collides with stay symlinks either way.
      keepContentsDirlinks ? false,

      # The image this one is built on: a result of pullImage,
      # pullImageFromManifest, buildImage, buildLayeredImage or
      # streamLayeredImage; a docker-archive tarball in the store, plain or
      # gzipped (dockerTools.pullImage, dockerTools.buildImage, `docker
      # save`), whose layers are then served from the tarball without
      # unpacking it; or a nix2container buildImage or pullImage result.
      # Its layers come first, and its
      # config is the default that `config` is merged over, as Docker does
      # for a child image (Env by variable, Labels, ExposedPorts and Volumes
      # by key, other fields replaced). Default: none.
      fromImage ? null,

      # dockerTools: which image of a fromImage tarball that holds several
      # (a string each, or null: the first image). Passed to the builder
      # as is.
      fromImageName ? null,
      fromImageTag ? null,

      # Layers from buildLayer (with the layers they are built on), placed
      # after fromImage's and before the ones made from config and
      # copyToRoot, which leave out every store path these already hold.
      layers ? [ ],

      # How many layers the config and copyToRoot closure is split into.
      # Paths are ranked by popularity (how many paths depend on them), as
      # dockerTools.buildLayeredImage does, so that widely shared paths get
      # layers of their own and are shared between images; the remaining
      # paths share the last layer. Default 1: one layer, which is what
      # dockerTools.buildImage gives and is the cheapest to push once.
      maxLayers ? 1,

      # Mode and ownership overrides: a list of
      # { path; regex ? ".*"; mode ? null; uid ? null; gid ? null; uname ? null; gname ? null; }.
      # `path` is the store path the entry applies to (a copyToRoot path or
      # any path in the closure); `regex` (Go RE2 syntax) is matched against
      # each file's full source path, like "/nix/store/…-root/data$".
      # Default: none (root-owned, Nix store modes).
      perms ? [ ],

      # Adds a layer holding a Nix database (/nix/var/nix/db) that registers
      # exactly the store paths under /nix/store in the image (not the
      # copyToRoot content relocated to /), with a GC root
      # (/nix/var/nix/gcroots/docker/…) for each path the image was asked to
      # hold. Needs `nix` (or `pkgs`) when the library is imported.
      # Default: false.
      initializeNixDatabase ? false,

      # dockerTools' name of initializeNixDatabase. Default: null (not given).
      includeNixDB ? null,

      # Owner of the store paths of the image's own layers (not those of
      # `layers` or fromImage) and, with initializeNixDatabase, of /nix,
      # /nix/store and the database, so that a non-root user can run Nix in
      # the container. Default: `uid` and `gid` (0, root).
      nixUid ? uid,
      nixGid ? gid,

      # dockerTools: owner of every entry of the image's own layers (the
      # copyToRoot content and the store paths; nixUid/nixGid and perms
      # apply after it). Default: 0, 0, "root", "root".
      uid ? 0,
      gid ? 0,
      uname ? "root",
      gname ? "root",

      # dockerTools: false leaves every store path out of the image's own
      # layers, config closure included: only the copyToRoot content goes
      # in, for containers run with the host's store mounted. Default: true.
      includeStorePaths ? true,

      # dockerTools: modification time of the entries of the image's own
      # layers, RFC 3339 or "now" (which makes every build differ).
      # Default: "1970-01-01T00:00:01Z".
      mtime ? "1970-01-01T00:00:01Z",

      # The image creation time, RFC 3339. Default 1970-01-01T00:00:01Z, so
      # that builds are reproducible; "now" uses the build time (and makes
      # the image differ on every build).
      created ? "1970-01-01T00:00:01Z",

      # Architecture in Docker/OCI naming (amd64, arm64, ...). Default: the
      # build machine's (from the library's `system`).
      arch ? internal.hostArch,

      # dockerTools' name of arch. Default: null (not given).
      architecture ? null,

      # Architecture variant (v7 for 32-bit arm, ...). Default: the build
      # machine's when arch is left as the default, else none.
      variant ? (if args ? arch || args ? architecture then "" else internal.hostVariant),

      # Operating system. Default: "linux".
      os ? "linux",

      # Layer compression: "gzip" (default), "zstd" or "none".
      compression ? "gzip",

      # dockerTools' name of compression: "gz", "zstd" or "none". Default:
      # null (not given).
      compressor ? null,

      # Author written into the image config. Default: none.
      author ? null,

      # dockerTools: a shell script run (`sh -e`, PATH = coreutils' bin) in
      # a copy of the merged copyToRoot content, which becomes the image
      # root, before the layer is described; it is not root. Modes it sets
      # (`chmod 1777 tmp`) reach the image although the Nix store resets
      # them: they are recorded beside the tree and applied as perms, so
      # the layer is still streamed from the store. Needs `runtimeShell`
      # and `coreutils` (or `pkgs`). Default: "".
      extraCommands ? "",

      # dockerTools: a shell script run after extraCommands in the same
      # tree under fakeroot, so that `chown 1000:1000 data` sets the owner
      # the image shows. Needs `fakeroot` too (or `pkgs`). Default: "".
      fakeRootCommands ? "",

      # dockerTools: run fakeRootCommands under proot with the tree as /
      # (the Nix store bound in), so that scripts writing to / work. Needs
      # `proot` (or `pkgs`). Default: false.
      enableFakechroot ? false,

      # Attributes merged into the result. Default: none.
      passthru ? { },

      # dockerTools' streamLayeredImage arguments that have no nixoci
      # meaning, accepted so that its calls carry over: debug (dockerTools
      # prints its layering; no effect here) and layeringPipeline
      # (dockerTools' experimental custom layering: only null is accepted,
      # as layers are split by popularity with maxLayers, or given as
      # buildLayer results in `layers`). Default: false, null.
      debug ? false,
      layeringPipeline ? null,

      # Nix meta attributes of the result (description, license, ...).
      meta ? { },

      # A script run as root in a VM over the finished image; its changes
      # (outside /nix/store) become one more layer. See ./run-as-root.nix
      # for what the script sees. Default: none.
      runAsRoot ? null,

      # runAsRoot: MiB of scratch disk space (default 1024), MiB of VM
      # memory (default 512) and a time limit in seconds (default 1800).
      diskSize ? 1024,
      buildVMMemorySize ? 512,
      runAsRootTimeout ? 1800,

      # runAsRoot: the VM's accelerator. "auto" uses KVM when /dev/kvm
      # opens, and when the VM does not come up under it (qemu exits, or the
      # guest does not report within 5 s) runs it again under TCG emulation,
      # much slower, with one warning saying why; "kvm" fails instead of
      # falling back; "tcg" never tries KVM. The build log names the one
      # that ran. Default: the library's runAsRootAccel, "auto" unless the
      # import says otherwise.
      runAsRootAccel ? runAsRootLayer.defaults.runAsRootAccel,

      # runAsRoot: true requires the "kvm" system feature (only machines
      # with KVM build it; Nix sandboxes then give the builder /dev/kvm) and
      # implies runAsRootAccel = "kvm". Default: the library's requireKVM,
      # false unless the import says otherwise.
      requireKVM ? runAsRootLayer.defaults.requireKVM,

      # Whether maxLayers counts the layers of fromImage and `layers` as
      # well, as streamLayeredImage's maxLayers does (the whole image then
      # has at most maxLayers layers). Default: false, maxLayers splits the
      # image's own closure only.
      maxLayersCountsBase ? false,
    }:
    let
      fn = "buildImage";
      lname = internal.lower name;
      # dockerTools' names given: the same call with nixoci's names.
      renamed =
        if architecture == null && compressor == null && includeNixDB == null then
          null
        else
          builtins.removeAttrs args [
            "architecture"
            "compressor"
            "includeNixDB"
          ]
          // {
            arch = internal.alias fn args "arch" arch "architecture" architecture;
            compression = internal.compressionOf fn args compression compressor;
            initializeNixDatabase = internal.alias fn args "initializeNixDatabase" initializeNixDatabase "includeNixDB" includeNixDB;
          };
      # copyToRoot, or contents; an empty one of the two is no conflict.
      givenRoots =
        if toList contents != [ ] && toList copyToRoot != [ ] then
          throw "nixoci.buildImage: give either copyToRoot or contents (its older name), not both"
        else
          map toPath (toList (if toList copyToRoot != [ ] then copyToRoot else contents));
      # extraCommands and fakeRootCommands run in a copy of the merged
      # content, which then is the only path copied to the root.
      customised =
        if extraCommands == "" && fakeRootCommands == "" then
          null
        else
          customise {
            inherit
              fn
              name
              keepContentsDirlinks
              extraCommands
              fakeRootCommands
              enableFakechroot
              ;
            roots = givenRoots;
          };
      roots = if customised == null then givenRoots else [ customised.out.outPath ];
      owner =
        if uid == 0 && gid == 0 && uname == "root" && gname == "root" then
          null
        else
          { inherit uid gid uname gname; };
      # Every store path the config mentions (with context, so they are inputs).
      configJSON = builtins.toJSON config;
      configPaths = internal.storePathsIn configJSON;
      chain = internal.layerChain fn (toList layers);
      # The base image's store path: a nixoci or nix2container descriptor,
      # or a docker-archive tarball (the builder tells them apart).
      base =
        if fromImage == null then
          null
        else
          (import ./base.nix { inherit internal; }).imagePath fn "fromImage" fromImage;
      nixStore =
        if !initializeNixDatabase then
          null
        else if nix == null then
          throw "nixoci.buildImage: initializeNixDatabase needs Nix's nix-store at build time: pass `nix` (a path or derivation holding bin/nix-store) or `pkgs` when importing nixoci's nix/ library"
        else
          "${toPath nix}/bin/nix-store";
      checked =
        internal.checkCompression fn compression
        && internal.checkMaxLayers fn maxLayers
        && (
          builtins.isString name && name != ""
          || throw "nixoci.buildImage: name must be a non-empty string, not ${describe name}"
        )
        && (
          tag == null || builtins.isString tag && tag != ""
          || throw "nixoci.buildImage: tag must be a non-empty string or null (the output hash), not ${describe tag}"
        )
        && (
          builtins.isAttrs config
          || throw "nixoci.buildImage: config must be an attribute set (an OCI image config such as { Cmd = [ ... ]; }), not ${describe config}"
        )
        && (
          builtins.isString created
          || throw "nixoci.buildImage: created must be an RFC 3339 time string or \"now\", not ${describe created}"
        )
        && (
          builtins.isInt nixUid && builtins.isInt nixGid && nixUid >= 0 && nixGid >= 0
          || throw "nixoci.buildImage: nixUid and nixGid must be non-negative integers"
        )
        && (
          builtins.isBool initializeNixDatabase
          || throw "nixoci.buildImage: initializeNixDatabase must be true or false, not ${describe initializeNixDatabase}"
        )
        && (
          builtins.all (v: v == null || builtins.isString v) [ fromImageName fromImageTag ]
          || throw "nixoci.buildImage: fromImageName and fromImageTag must be strings or null, not ${describe fromImageName} and ${describe fromImageTag}"
        )
        && (
          builtins.all builtins.isBool [ keepContentsDirlinks includeStorePaths enableFakechroot ]
          || throw "nixoci.buildImage: keepContentsDirlinks, includeStorePaths and enableFakechroot must be true or false"
        )
        && (
          builtins.isString extraCommands && builtins.isString fakeRootCommands
          || throw "nixoci.buildImage: extraCommands and fakeRootCommands must be shell script strings, not ${describe extraCommands} and ${describe fakeRootCommands}"
        )
        && (
          builtins.isInt uid && builtins.isInt gid && uid >= 0 && gid >= 0
          || throw "nixoci.buildImage: uid and gid must be non-negative integers, not ${describe uid} and ${describe gid}"
        )
        && (
          builtins.isString uname && builtins.isString gname
          || throw "nixoci.buildImage: uname and gname must be strings (user and group names), not ${describe uname} and ${describe gname}"
        )
        && (
          builtins.isString mtime
          || throw "nixoci.buildImage: mtime must be an RFC 3339 time string or \"now\", not ${describe mtime}"
        )
        && internal.checkPassthru fn passthru
        && (
          layeringPipeline == null
          || throw "nixoci.buildImage: layeringPipeline (dockerTools' experimental custom layering) is not supported: layers are split by popularity with maxLayers, or give buildLayer results in `layers`"
        )
        && (builtins.isBool debug || throw "nixoci.buildImage: debug must be true or false, not ${describe debug}");
      common = {
        inherit
          config
          created
          arch
          variant
          os
          compression
          author
          ;
      };
      image = mkImage {
        inherit fn meta;
        name = lname;
        tag = if runAsRoot == null then tag else null;
        attrs = common // {
          inherit maxLayers initializeNixDatabase nixUid nixGid nixStore;
          inherit
            fromImageName
            fromImageTag
            keepContentsDirlinks
            includeStorePaths
            mtime
            owner
            ;
          customPerms = if customised == null then null else customised.perms.outPath;
          copyToRoot = roots;
          inherit configPaths;
          perms = internal.normalizePerms fn (toList perms);
          fromImage = base;
          layers = map toPath chain;
          outputs = if initializeNixDatabase then [ "out" "db" ] else [ "out" ];
          # Set only when true, so that other images' derivations stay as they were.
          ${if maxLayersCountsBase then "maxLayersCountsBase" else null} = true;
          exportReferencesGraph = {
            # What the image's own layers hold.
            closure = roots ++ configPaths;
          }
          // (
            if initializeNixDatabase then
              {
                # Registration data (hashes, references) of the store paths
                # that the buildLayer layers hold.
                layerClosure = map toPath chain;
              }
            else
              { }
          );
        };
      };
      # runAsRoot: the image above, plus the layer the script makes.
      withRunAsRoot =
        let
          rootLayer = runAsRootLayer {
            name = lname;
            inherit
              image
              created
              compression
              diskSize
              buildVMMemorySize
              ;
            script = runAsRoot;
            timeout = runAsRootTimeout;
            accel = runAsRootAccel;
            inherit requireKVM;
          };
        in
        mkImage {
          inherit fn meta tag;
          name = lname;
          attrs = common // {
            maxLayers = 1;
            fromImage = toPath image;
            layers = [ (toPath rootLayer) ];
            copyToRoot = [ ];
            configPaths = [ ];
            perms = [ ];
            initializeNixDatabase = false;
            exportReferencesGraph.closure = [ ];
          };
        };
    in
    if renamed != null then
      buildImageFn renamed // { buildArgs = args; }
    else
      assert checked;
      (if runAsRoot == null then image else withRunAsRoot)
      // passthru
      // {
        buildArgs = args;
      };
in
{
  buildImage = internal.makeOverridable buildImageFn;
}
