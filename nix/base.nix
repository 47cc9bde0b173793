# Images as the library takes them: fromImage, exportImage's fromImage and
# mergeImages' list. Written with builtins only.
{ internal }:
let
  inherit (internal) toPath describe;

  isStorePathString =
    v:
    builtins.isString v
    && builtins.hasContext v
    && builtins.substring 0 (builtins.stringLength builtins.storeDir + 1) v == "${builtins.storeDir}/";
in
rec {
  # The nixoci image of a value, when it is one: a buildImage,
  # buildLayeredImage, pullImage or pullImageFromManifest result, or a
  # streamLayeredImage script (its `image`).
  nixociImage =
    v:
    if builtins.isAttrs v && (v.isNixociImage or false) then
      v
    else if builtins.isAttrs v && (v.isExe or false) && (v.image.isNixociImage or false) then
      v.image
    else
      null;

  # imagePath fn arg v: the store path (a string with context) of the image
  # v, or an evaluation error naming the function and argument. The builder
  # tells the kinds of files apart (an image descriptor, nixoci's or
  # nix2container's, or a docker-archive, plain, gzip or zstd).
  imagePath =
    fn: arg: v:
    let
      ours = nixociImage v;
    in
    if ours != null then
      toPath ours
    else if builtins.isAttrs v && (v.isNixociIndex or false) then
      throw "nixoci.${fn}: ${arg} is a nixoci.buildImageIndex result, an index of images for several platforms: give one of its images (the buildImage for this platform) instead"
    else if builtins.isAttrs v && (v.isNixociLayer or false) then
      throw "nixoci.${fn}: ${arg} is a nixoci.buildLayer result, layers without a config: pass it in `layers` instead"
    else if builtins.isAttrs v && (v.isExe or false) then
      throw "nixoci.${fn}: ${arg} is a dockerTools.streamLayeredImage script, which makes its image only when it runs: use dockerTools.buildLayeredImage (a tarball) or nixoci.streamLayeredImage instead"
    else if builtins.isAttrs v && (v.type or null) == "derivation" then
      toPath v
    else if builtins.isPath v then
      "${v}"
    else if isStorePathString v then
      v
    else
      throw "nixoci.${fn}: ${arg} must be an image: a result of nixoci.pullImage, nixoci.pullImageFromManifest or nixoci.buildImage (or buildLayeredImage, streamLayeredImage); a docker-archive tarball in the store, plain or gzipped (dockerTools.pullImage, dockerTools.buildImage or buildLayeredImage, `docker save`); or a nix2container buildImage or pullImage result. Not ${describe v}";

  # The "name:tag" an image loads as, when the value says it (nixoci and
  # nix2container results, dockerTools tarballs); else null, and an archive
  # keeps the names it holds.
  imageRef =
    v:
    let
      ours = nixociImage v;
    in
    if ours != null then
      ours.imageRefUnsafe
    else if builtins.isAttrs v && v ? imageName && v ? imageTag && v.imageTag != "" then
      builtins.unsafeDiscardStringContext "${v.imageName}:${v.imageTag}"
    else
      null;
}
