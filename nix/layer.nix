# buildLayer: layers described once and shared by images (and by other layers
# built on them).
{
  internal,
  # { digestCache = "/dir"; } when the library's digestCache is set, else
  # { } (see ./default.nix): added to the builder's attributes.
  digestCacheAttrs ? { },
}:
let
  inherit (internal) toPath toList;
  mkBuild = kind: attrs: internal.mkBuild kind (attrs // digestCacheAttrs);

  # Describes one or more layers holding store paths. The output is a
  # directory with `layers.json` (a `nixoci layers` document) and, for
  # non-reproducible layers, each layer's tar. Pass the result to
  # buildImage's (or another buildLayer's) `layers`. The result also has
  # `passthru`'s attributes and `override` (as nixpkgs' makeOverridable).
  buildLayerFn =
    {
      # Derivation name of the result.
      name ? "layer",

      # Store paths whose closures go into the layer under /nix/store.
      deps ? [ ],

      # Store paths (or one) whose content is placed at the image root `/`,
      # as buildImage's copyToRoot (merged in list order; a path that
      # anything refers to, itself included, also goes under /nix/store);
      # their dependencies go under /nix/store.
      copyToRoot ? [ ],

      # nix2container's older name of copyToRoot; give one or the other.
      contents ? null,

      # As buildImage's keepContentsDirlinks. Default: false.
      keepContentsDirlinks ? false,

      # A store path (or list of them) left out of the layer, though it is in
      # the closure of `deps`; its own dependencies stay. Default: none.
      ignore ? null,

      # Layers (buildLayer results) this one is built on. Any store path in
      # them, or in the layers they are built on, is not written again here.
      # The image that uses this layer gets them too, below it.
      layers ? [ ],

      # false writes each layer's tar into the output (for content that is
      # not a pure function of the store paths); true (default) stores only
      # digests, and the tar is streamed from the store when copied.
      reproducible ? true,

      # Mode and ownership overrides: a list of
      # { path; regex ? ".*"; mode ? null; uid ? null; gid ? null; uname ? null; gname ? null; },
      # where `path` is the store path they apply to and `regex` (Go RE2
      # syntax, default ".*") is matched against each file's full source path,
      # such as "/nix/store/…-root/data". Default: none.
      perms ? [ ],

      # How many layers the closure is split into by popularity (the most
      # shared paths get layers of their own, the rest share the last one).
      # Default 1: a single layer.
      maxLayers ? 1,

      # History entry of the layer(s) in the image config:
      # { created_by ? "nixoci buildLayer"; author ? null; comment ? null; }.
      metadata ? { },

      # Layer compression: "gzip" (default), "zstd" or "none".
      compression ? "gzip",

      # Attributes merged into the result. Default: none.
      passthru ? { },
    }:
    let
      fn = "buildLayer";
      below = internal.layerChain fn (toList layers);
      depPaths = map toPath (toList deps);
      rootPaths =
        if toList contents != [ ] && toList copyToRoot != [ ] then
          throw "nixoci.buildLayer: give either copyToRoot or contents (its older name), not both"
        else
          map toPath (toList (if toList copyToRoot != [ ] then copyToRoot else contents));
      checked =
        internal.checkCompression fn compression
        && internal.checkMaxLayers fn maxLayers
        && (
          builtins.isBool reproducible
          || throw "nixoci.buildLayer: reproducible must be true or false, not ${internal.describe reproducible}"
        )
        && (
          builtins.isAttrs metadata
          || throw "nixoci.buildLayer: metadata must be an attribute set { created_by; author; comment; }, not ${internal.describe metadata}"
        )
        && (
          builtins.isBool keepContentsDirlinks
          || throw "nixoci.buildLayer: keepContentsDirlinks must be true or false, not ${internal.describe keepContentsDirlinks}"
        )
        && internal.checkPassthru fn passthru;
      drv = mkBuild "layers" {
        name = internal.safeName name;
        deps = depPaths;
        copyToRoot = rootPaths;
        ignore = map toPath (toList ignore);
        excludeLayers = map toPath below;
        inherit
          reproducible
          maxLayers
          compression
          keepContentsDirlinks
          ;
        perms = internal.normalizePerms fn (toList perms);
        history = {
          created_by = metadata.created_by or "nixoci buildLayer";
          author = metadata.author or null;
          comment = metadata.comment or null;
        };
        exportReferencesGraph.closure = depPaths ++ rootPaths;
      };
    in
    assert checked;
    drv
    // passthru
    // {
      # Marks buildLayer results (buildImage checks `layers` with it).
      isNixociLayer = true;
      # The layers this one is built on, base first, each once.
      layersBelow = below;
    };
in
{
  inherit (internal) layerChain;

  buildLayer = internal.makeOverridable buildLayerFn;
}
