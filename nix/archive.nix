# streamLayeredImage, buildLayeredImage, exportImage and mergeImages:
# dockerTools' functions that make docker-archives (tarballs for
# `docker load`, `docker import`), on top of buildImage. The archives are
# streamed from the store by `nixoci save` and `nixoci export`; only
# buildLayeredImage's `tarball`, exportImage and mergeImages write one.
{
  internal,
  nixoci,
  # shell fn: the runtimeShell path, or a throw naming the function `fn`.
  shell,
  buildImage,
}:
let
  inherit (internal) describe;
  base = import ./base.nix { inherit internal; };
  bin = "${nixoci}/bin/nixoci";

  # 'text' quoted for a POSIX shell.
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # A derivation writing one docker-archive of images (`nixoci save`):
  # images are { path; tags; } (tags [ ]: an archive's own names).
  saveArchive =
    {
      name,
      images,
      compression,
    }:
    internal.mkBuild "save" {
      name = internal.safeName name;
      inherit images compression;
      preferLocalBuild = true;
    };

  # dockerTools' compressor names and the file name ending of each.
  compressors = {
    none = {
      compression = "none";
      ext = "";
    };
    gz = {
      compression = "gzip";
      ext = ".gz";
    };
    zstd = {
      compression = "zstd";
      ext = ".zst";
    };
  };

  # The image that streamLayeredImage and buildLayeredImage describe: a
  # buildImage with dockerTools' layered defaults. It takes every argument
  # of dockerTools.streamLayeredImage with the same meaning and default.
  layered =
    fn:
    args@{
      # Image name; lower-cased.
      name,

      # Image tag. Default: the hash part of the image descriptor's store
      # path, so every different image gets a different tag.
      tag ? null,

      # The image this one is built on, as buildImage's fromImage: a nixoci
      # image, a docker-archive tarball (dockerTools.pullImage,
      # dockerTools.buildImage, `docker save`), or a nix2container
      # result. Default: none (FROM scratch).
      fromImage ? null,

      # With fromImageTag, the image of a docker-archive fromImage that
      # holds several, as in buildImage (a nixoci addition: dockerTools'
      # layered functions take the first image). Default: null, the first.
      fromImageName ? null,
      fromImageTag ? null,

      # Store paths (or one) whose content is placed at the image root `/`,
      # as buildImage's copyToRoot; their closure goes under /nix/store.
      # Default: none.
      contents ? [ ],

      # The OCI image config (Cmd, Entrypoint, Env, ...). Every store path
      # it mentions is put in the image with its closure. Default: empty.
      config ? { },

      # Architecture in OCI naming (amd64, arm64, ...). Default: the build
      # machine's (from the library's `system`).
      architecture ? internal.hostArch,

      # Creation time, RFC 3339, or "now" (then the image differs on every
      # build). Default: "1970-01-01T00:00:01Z".
      created ? "1970-01-01T00:00:01Z",

      # Modification time of the image's own entries, as in buildImage.
      # Default: "1970-01-01T00:00:01Z".
      mtime ? "1970-01-01T00:00:01Z",

      # Owner of the image's own store paths, as in buildImage.
      # Default: 0, 0, "root", "root".
      uid ? 0,
      gid ? 0,
      uname ? "root",
      gname ? "root",

      # At most this many layers in the whole image, fromImage's included,
      # as dockerTools counts them: the most depended-on store paths get a
      # layer each, the rest share the last one. Docker allows about 125
      # layers per image; 100 leaves room for images built on this one.
      # Default: 100.
      maxLayers ? 100,

      # Shell commands run in the directory of the image's root content
      # before it is described, as in buildImage. Default: "".
      extraCommands ? "",

      # Shell commands run under fakeroot after extraCommands, so that
      # `chown` sets owners in the image, as in buildImage. Default: "".
      fakeRootCommands ? "",

      # Whether fakeRootCommands also run in a fakechroot of the image, as
      # in buildImage. Default: false.
      enableFakechroot ? false,

      # Whether the store paths of the closure go in the image; false leaves
      # only the root content (for containers that mount the host's store).
      # Default: true.
      includeStorePaths ? true,

      # Whether the image gets a Nix database registering its store paths
      # (buildImage's initializeNixDatabase). Default: false.
      includeNixDB ? false,

      # Attributes added to the result. Default: none.
      passthru ? { },

      # Nix meta attributes of the image. Default: none.
      meta ? { },

      # dockerTools' experimental custom layering. Not supported: nixoci
      # layers by popularity (maxLayers); giving one is an evaluation error.
      # Default: null.
      layeringPipeline ? null,

      # dockerTools prints its layering decisions with it; nixoci's builder
      # always logs them. Accepted and ignored. Default: false.
      debug ? false,

      # Layer compression in registries: "gzip", "zstd" or "none" (a nixoci
      # argument; docker-archives hold plain tars). Default: "gzip".
      compression ? "gzip",
    }:
    let
      # Only what was given goes on, so buildImage's defaults (the same as
      # dockerTools') apply to the rest.
      given = builtins.removeAttrs args [
        "architecture"
        "layeringPipeline"
        "debug"
        "passthru"
        "maxLayers"
      ];
      checked =
        (
          layeringPipeline == null
          || throw "nixoci.${fn}: layeringPipeline is not supported: nixoci splits the closure by popularity into maxLayers layers; leave layeringPipeline out"
        )
        && (
          builtins.isInt maxLayers && maxLayers >= 1
          || throw "nixoci.${fn}: maxLayers must be an integer of at least 1, not ${describe maxLayers}"
        )
        && (builtins.isAttrs passthru || throw "nixoci.${fn}: passthru must be an attribute set, not ${describe passthru}");
    in
    assert checked;
    buildImage (
      given
      // {
        inherit maxLayers;
        maxLayersCountsBase = true;
      }
      // (if args ? architecture then { arch = architecture; } else { })
    );

  # streamLayeredImage's script: `nixoci save` of the image to stdout.
  streamScript =
    fn: image:
    internal.mkBuild "write-executable" {
      name = "stream-${internal.safeName (baseNameOf image.imageName)}";
      preferLocalBuild = true;
      text = ''
        #!${shell fn}
        # Writes the image ${image.imageRefUnsafe} as a docker-archive to standard output:
        #   $0 | docker load
        # Arguments go to `nixoci save` (-o FILE, --compression gzip, --tag NAME:TAG).
        exec ${quote bin} save --tag ${quote image.imageRefUnsafe} "$@" ${quote "nix:${image}"}
      '';
    };
in
{
  # An executable that writes the image, as a docker-archive, to standard
  # output, streamed from the store: `$(nix-build -A image) | docker load`.
  # Nothing but the small image descriptor is written to the store.
  # Arguments: those of `layered` above, which are dockerTools'.
  #
  # Passthru: imageName, imageTag, imageRefUnsafe, isExe (as dockerTools
  # marks its stream scripts), `image` (the image descriptor, a buildImage
  # result, with its copyToRegistry/copyToDockerDaemon/copyToPodman/copyTo
  # scripts, also passthru here), and `passthru`.
  streamLayeredImage =
    args:
    let
      fn = "streamLayeredImage";
      image = layered fn args;
      script = streamScript fn image;
    in
    script
    // {
      inherit (image)
        imageName
        imageTag
        imageRefUnsafe
        copyToRegistry
        copyToDockerDaemon
        copyToPodman
        copyTo
        ;
      inherit image;
      isExe = true;
    }
    // (args.passthru or { });

  # The image of streamLayeredImage, as buildImage gives it (a descriptor,
  # with the copyTo* scripts), plus `tarball`: a derivation holding the
  # image as a docker-archive, `<name>.tar.gz`, for `docker load < tarball`.
  # Takes every argument of streamLayeredImage, and:
  buildLayeredImage =
    {
      name,
      # Compression of the tarball: "gz", "zstd" or "none" (as dockerTools'
      # compressor; the layers inside are plain tars either way). Default: "gz".
      compressor ? "gz",
      ...
    }@args:
    let
      fn = "buildLayeredImage";
      comp =
        compressors.${compressor}
          or (throw "nixoci.buildLayeredImage: compressor must be \"gz\", \"zstd\" or \"none\", not ${describe compressor}");
      image = layered fn (builtins.removeAttrs args [ "compressor" ]);
      tarball = saveArchive {
        name = "${baseNameOf name}.tar${comp.ext}";
        images = [
          {
            path = "${image}";
            tags = [ image.imageRefUnsafe ];
          }
        ];
        inherit (comp) compression;
      };
    in
    image // { inherit tarball; } // (args.passthru or { });

  # The file system of an image as one tar: its layers applied in order,
  # whiteouts (also opaque ones) applied and left out, for
  # `docker import result`. No VM: `nixoci export` reads the layers.
  exportImage =
    {
      # The image: anything buildImage takes as fromImage (a nixoci image, a
      # docker-archive tarball, a nix2container result).
      fromImage,

      # With fromImageTag, the image of a docker-archive that holds several,
      # as in dockerTools. Default: null, the first image.
      fromImageName ? null,
      fromImageTag ? null,

      # Derivation name of the tar. Default: "<image name>.tar" for nixoci
      # images, else fromImage.name as in dockerTools (a path needs one).
      name ?
        let
          ours = base.nixociImage fromImage;
        in
        if ours != null then
          "${baseNameOf ours.imageName}.tar"
        else if builtins.isAttrs fromImage && fromImage ? name then
          fromImage.name
        else
          throw "nixoci.exportImage: give `name` when fromImage is not a derivation (here ${describe fromImage})",

      # dockerTools' VM disk size. No VM is used; accepted and ignored.
      # Default: 1024.
      diskSize ? 1024,
    }:
    internal.mkBuild "export" {
      name = internal.safeName name;
      fromImage = base.imagePath "exportImage" "fromImage" fromImage;
      inherit fromImageName fromImageTag;
      preferLocalBuild = true;
    };

  # Several images in one docker-archive (gzip), for one `docker load`:
  # mergeImages [ imageA imageB ]. Each may be a nixoci image (loaded as its
  # name:tag), a docker-archive tarball (all its images, with their names)
  # or a nix2container result.
  mergeImages =
    images:
    if !(builtins.isList images) then
      throw "nixoci.mergeImages: give a list of images, not ${describe images}"
    else
      saveArchive {
        name = "merge-docker-images";
        images = map (
          v:
          let
            ref = base.imageRef v;
          in
          {
            path = base.imagePath "mergeImages" "each element of its list" v;
            tags = if ref == null then [ ] else [ ref ];
          }
        ) images;
        compression = "gzip";
      };
}
