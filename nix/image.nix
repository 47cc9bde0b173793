# buildImage: an image descriptor (image.json) built from store paths.
{
  internal,
  scripts,
  nix,
  runAsRootLayer,
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
in
{
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
  # `--dest-tls-verify=false` or `--dest-creds user:pass`).
  buildImage =
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
      # dependencies go under /nix/store. Default: none.
      copyToRoot ? null,

      # The older dockerTools name of copyToRoot; give one or the other.
      contents ? null,

      # The image this one is built on: a result of pullImage,
      # pullImageFromManifest or buildImage. Its layers come first, and its
      # config is the default that `config` is merged over, as Docker does
      # for a child image (Env by variable, Labels, ExposedPorts and Volumes
      # by key, other fields replaced). Default: none.
      fromImage ? null,

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

      # Owner of the store paths of the image's own layers (not those of
      # `layers` or fromImage) and, with initializeNixDatabase, of /nix,
      # /nix/store and the database, so that a non-root user can run Nix in
      # the container. Default: 0 (root).
      nixUid ? 0,
      nixGid ? 0,

      # The image creation time, RFC 3339. Default 1970-01-01T00:00:01Z, so
      # that builds are reproducible; "now" uses the build time (and makes
      # the image differ on every build).
      created ? "1970-01-01T00:00:01Z",

      # Architecture in Docker/OCI naming (amd64, arm64, ...). Default: the
      # build machine's (from the library's `system`).
      arch ? internal.hostArch,

      # Architecture variant (v7 for 32-bit arm, ...). Default: the build
      # machine's when arch is left as the default, else none.
      variant ? (if args ? arch then "" else internal.hostVariant),

      # Operating system. Default: "linux".
      os ? "linux",

      # Layer compression: "gzip" (default), "zstd" or "none".
      compression ? "gzip",

      # Author written into the image config. Default: none.
      author ? null,

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
    }:
    let
      fn = "buildImage";
      lname = internal.lower name;
      roots =
        if contents != null && copyToRoot != null then
          throw "nixoci.buildImage: give either copyToRoot or contents (its older name), not both"
        else
          map toPath (toList (if copyToRoot != null then copyToRoot else contents));
      # Every store path the config mentions (with context, so they are inputs).
      configJSON = builtins.toJSON config;
      configPaths = internal.storePathsIn configJSON;
      chain = internal.layerChain fn (toList layers);
      base =
        if fromImage == null then
          null
        else if builtins.isAttrs fromImage && (fromImage.isNixociImage or false) then
          toPath fromImage
        else
          throw "nixoci.buildImage: fromImage must be the result of nixoci.pullImage, nixoci.pullImageFromManifest or nixoci.buildImage, not ${describe fromImage}";
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
        );
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
          copyToRoot = roots;
          inherit configPaths;
          perms = internal.normalizePerms fn (toList perms);
          fromImage = base;
          layers = map toPath chain;
          outputs = if initializeNixDatabase then [ "out" "db" ] else [ "out" ];
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
    assert checked;
    if runAsRoot == null then image else withRunAsRoot;
}
