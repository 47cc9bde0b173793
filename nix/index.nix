# buildImageIndex: an index descriptor listing one image per platform,
# pushed as an OCI image index (a multi-arch image).
{
  internal,
  scripts,
}:
let
  inherit (internal) toPath describe;

  # The platform an image result was built for, as "os/arch/variant" with
  # architecture aliases normalised, or null when the result does not say
  # (the builder checks it then).
  platformKey =
    img:
    if img ? arch && builtins.isString img.arch then
      let
        p = internal.platformOf img.arch;
        variant = if (img.variant or "") != "" then img.variant else p.variant or "";
      in
      "${img.os or "linux"}/${p.arch}${if variant == "" then "" else "/" + variant}"
    else
      null;
in
{
  # Builds an index descriptor: a store path holding one small JSON file
  # that lists images of one name for several platforms (each image's
  # descriptor, manifest digest and platform). `nixoci copy` pushes it to a
  # registry as an OCI image index with every image, as `skopeo copy --all`
  # does; docker-daemon: and containers-storage: get the image for the
  # machine's platform.
  #
  # Passthru: imageName, imageTag, imageRefUnsafe ("name:tag"), images, and
  # the scripts of buildImage: copyToRegistry, copyToDockerDaemon,
  # copyToPodman and copyTo (destination as first argument); further
  # arguments are passed to `nixoci copy`.
  buildImageIndex =
    {
      # Index name, as in "registry.example.com/team/app"; lower-cased. The
      # copy scripts push to name:tag. Required.
      name,

      # Tag. Default: the hash part of the output path, so that every
      # different index gets a different tag.
      tag ? null,

      # The images, one per platform: results of buildImage (or pullImage,
      # pullImageFromManifest), usually the same buildImage call for
      # several pkgs (cross-compiled, with `arch` set) or several systems.
      # Each image keeps its own name and tag; the index's are used when
      # copying. Required, at least one; two images of one platform are an
      # error.
      images,

      # Nix meta attributes of the result (description, license, ...).
      # Default: none.
      meta ? { },
    }:
    let
      fn = "buildImageIndex";
      lname = internal.lower name;
      imageList =
        if builtins.isList images then
          images
        else
          throw "nixoci.buildImageIndex: images must be a list of buildImage results, one per platform, not ${describe images}";
      checkImage =
        i: img:
        if builtins.isAttrs img && (img.isNixociIndex or false) then
          throw "nixoci.buildImageIndex: images element ${toString i} is an index (buildImageIndex); give the images it lists instead"
        else if builtins.isAttrs img && (img.isNixociImage or false) then
          true
        else
          throw "nixoci.buildImageIndex: images element ${toString i} must be the result of nixoci.buildImage, nixoci.pullImage or nixoci.pullImageFromManifest, not ${describe img}";
      keys = builtins.filter (k: k != null) (map platformKey imageList);
      duplicate = builtins.foldl' (
        acc: k:
        if acc.found != null then
          acc
        else if acc.seen ? ${k} then
          acc // { found = k; }
        else
          acc // { seen = acc.seen // { ${k} = true; }; }
      ) {
        seen = { };
        found = null;
      } keys;
      checked =
        (
          builtins.isString name && name != ""
          || throw "nixoci.buildImageIndex: name must be a non-empty string, not ${describe name}"
        )
        && (
          tag == null || builtins.isString tag && tag != ""
          || throw "nixoci.buildImageIndex: tag must be a non-empty string or null (the output hash), not ${describe tag}"
        )
        && (
          imageList != [ ]
          || throw "nixoci.buildImageIndex: images is empty: give at least one buildImage result"
        )
        && builtins.all (x: x) (builtins.genList (i: checkImage i (builtins.elemAt imageList i)) (builtins.length imageList))
        && (
          duplicate.found == null
          || throw "nixoci.buildImageIndex: images holds two images for ${duplicate.found}: an index has one image per platform (set each buildImage's arch)"
        );
      drv = internal.mkBuild "index" {
        name = "index-${internal.safeName lname}.json";
        imageName = lname;
        imageTag = tag;
        images = map toPath imageList;
      };
      imageTag =
        if tag != null then
          tag
        else
          builtins.substring 0 32 (baseNameOf (builtins.unsafeDiscardStringContext drv.outPath));
      index = drv // {
        inherit meta imageTag;
        # Marks indexes, which are not images (fromImage refuses them).
        isNixociIndex = true;
        imageName = lname;
        imageRefUnsafe = builtins.unsafeDiscardStringContext "${lname}:${imageTag}";
        images = imageList;
      }
      // scripts.copyScripts {
        inherit fn;
        image = index;
        imageName = lname;
        inherit imageTag;
      };
    in
    assert checked;
    index;
}
