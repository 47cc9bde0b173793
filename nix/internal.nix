# Helpers shared by the library's files, written with builtins only.
{ nixoci, system }:
rec {
  inherit system;

  # The builder of every derivation: the nixoci binary.
  builder = "${nixoci}/bin/nixoci";

  # mkBuild kind attrs: a derivation run by `nixoci nix-build <kind>`, which
  # reads `attrs` from .attrs.json (structured attributes).
  mkBuild =
    kind: attrs:
    builtins.derivation (
      {
        inherit system builder;
        args = [
          "nix-build"
          kind
        ];
        __structuredAttrs = true;
      }
      // attrs
    );

  # lower "Foo" == "foo" (ASCII only).
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lowerCase = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  lower = builtins.replaceStrings upper lowerCase;

  # A string usable in a derivation name: characters Nix refuses become "-".
  safeName =
    s:
    let
      parts = builtins.split "[^-.+_?=0-9a-zA-Z]" (builtins.unsafeDiscardStringContext s);
      joined = builtins.concatStringsSep "-" (builtins.filter builtins.isString parts);
      trimmed = builtins.head (builtins.match "[.]*(.*)" joined);
    in
    if trimmed == "" then "image" else trimmed;

  # The Docker/OCI architecture and variant of a Nix system.
  platformOf =
    sys:
    let
      cpu = builtins.head (builtins.split "-" sys);
      table = {
        x86_64 = { arch = "amd64"; };
        i686 = { arch = "386"; };
        aarch64 = { arch = "arm64"; };
        armv7l = { arch = "arm"; variant = "v7"; };
        armv6l = { arch = "arm"; variant = "v6"; };
        powerpc64le = { arch = "ppc64le"; };
        s390x = { arch = "s390x"; };
        riscv64 = { arch = "riscv64"; };
        mips64el = { arch = "mips64le"; };
        loongarch64 = { arch = "loong64"; };
      };
    in
    table.${cpu} or { arch = cpu; };

  hostArch = (platformOf system).arch;
  hostVariant = (platformOf system).variant or "";

  # Accepted layer compressions.
  compressions = [
    "gzip"
    "zstd"
    "none"
  ];

  # dockerTools' `compressor` values and the compression each one names.
  compressors = {
    gz = "gzip";
    zstd = "zstd";
    none = "none";
  };

  # The layer compression from nixoci's `compression` and dockerTools'
  # `compressor` (null when not given); giving both is an error unless they
  # agree.
  compressionOf =
    fn: args: compression: compressor:
    let
      fromCompressor =
        if builtins.isString compressor && compressors ? ${compressor} then
          compressors.${compressor}
        else
          throw "nixoci.${fn}: compressor (dockerTools' name of compression) must be one of \"gz\", \"zstd\" or \"none\", not ${describe compressor}";
    in
    if compressor == null then
      compression
    else if args ? compression && compression != fromCompressor then
      throw "nixoci.${fn}: give compression or compressor (its dockerTools name), not both"
    else
      fromCompressor;

  # alias fn args name value aliasName aliasValue: the value of an argument
  # that also has another name (null when not given); giving both with
  # different values is an error.
  alias =
    fn: args: name: value: aliasName: aliasValue:
    if aliasValue == null then
      value
    else if args ? ${name} && value != aliasValue then
      throw "nixoci.${fn}: give ${name} or ${aliasName} (its other name), not both"
    else
      aliasValue;

  # makeOverridable f args: f args, with `override` as nixpkgs'
  # lib.makeOverridable gives it: `result.override { … }` (or a function of
  # the old arguments) calls f again with the arguments updated.
  makeOverridable =
    f: args:
    let
      result = f args;
      override =
        newArgs: makeOverridable f (args // (if builtins.isFunction newArgs then newArgs args else newArgs));
    in
    if builtins.isAttrs result then result // { inherit override; } else result;

  # Checks a `passthru` argument; returns true or throws.
  checkPassthru =
    fn: passthru:
    builtins.isAttrs passthru
    || throw "nixoci.${fn}: passthru must be an attribute set (merged into the result), not ${describe passthru}";

  # The store path of a derivation, path or string, as a string with context.
  toPath = x: if builtins.isAttrs x then x.outPath else "${x}";

  # A value that may be one item or a list, as a list (null is empty).
  toList =
    x:
    if x == null then
      [ ]
    else if builtins.isList x then
      x
    else
      [ x ];

  # Store paths mentioned in a string, as plain strings (whole store path
  # names, without the part after them).
  storePathsIn =
    s:
    let
      re = "(${builtins.storeDir}/[0-9a-z]{32}-[-.+_?=0-9a-zA-Z]+)";
      parts = builtins.split re s;
    in
    map builtins.head (builtins.filter builtins.isList parts);

  # unique by key xs: xs without later items whose key was already seen,
  # in order; linear in the number of items (an attrset of seen keys).
  uniqueBy =
    key: xs:
    (builtins.foldl' (
      acc: x:
      let
        k = builtins.unsafeDiscardStringContext (key x);
      in
      if acc.seen ? ${k} then
        acc
      else
        {
          seen = acc.seen // {
            ${k} = true;
          };
          list = acc.list ++ [ x ];
        }
    ) {
      seen = { };
      list = [ ];
    } xs).list;

  # Describes a value's type for error messages.
  describe =
    v:
    if builtins.isAttrs v then
      (if v ? type && v.type == "derivation" then "the derivation ${v.name or "?"}" else "an attribute set")
    else if builtins.isString v then
      "the string \"${builtins.unsafeDiscardStringContext v}\""
    else if builtins.isPath v then
      "the path ${toString v}"
    else
      "a ${builtins.typeOf v}";

  # Checks common to buildImage and buildLayer; returns true or throws.
  checkCompression =
    fn: compression:
    if builtins.elem compression compressions then
      true
    else
      throw "nixoci.${fn}: compression must be one of \"gzip\", \"zstd\" or \"none\", not ${describe compression}";

  checkMaxLayers =
    fn: maxLayers:
    if builtins.isInt maxLayers && maxLayers >= 1 then
      true
    else
      throw "nixoci.${fn}: maxLayers must be an integer of at least 1, not ${
        if builtins.isInt maxLayers then toString maxLayers else describe maxLayers
      }";

  permAttrs = [
    "path"
    "regex"
    "mode"
    "uid"
    "gid"
    "uname"
    "gname"
  ];

  # perms entries as passed to the builder: `path` as a store path string.
  normalizePerms =
    fn: perms:
    builtins.genList (
      i:
      let
        p = builtins.elemAt perms i;
        unknown = builtins.filter (n: !(builtins.elem n permAttrs)) (builtins.attrNames p);
      in
      if !(builtins.isAttrs p) then
        throw "nixoci.${fn}: perms entry ${toString i} must be an attribute set { path; regex; mode; uid; gid; uname; gname; }, not ${describe p}"
      else if !(p ? path) then
        throw "nixoci.${fn}: perms entry ${toString i} has no `path`: each entry needs the store path it applies to, as in { path = myPackage; regex = \".*\"; mode = \"0755\"; } (accepted attributes: path, regex, mode, uid, gid, uname, gname)"
      else if unknown != [ ] then
        throw "nixoci.${fn}: perms entry ${toString i} has unknown attribute `${builtins.head unknown}` (accepted attributes: path, regex, mode, uid, gid, uname, gname)"
      else if p ? mode && !(builtins.isString p.mode) then
        throw "nixoci.${fn}: perms entry ${toString i}: mode must be an octal string such as \"0755\", not ${describe p.mode}"
      else
        p
        // {
          path = toPath p.path;
          regex = p.regex or ".*";
        }
    ) (builtins.length perms);

  # The layers below and including each of `layers` (results of buildLayer),
  # base first, each once.
  layerChain =
    fn: layers:
    uniqueBy (l: l.outPath) (
      builtins.concatMap (
        l:
        if builtins.isAttrs l && l.isNixociLayer or false then
          l.layersBelow ++ [ l ]
        else
          throw "nixoci.${fn}: every element of `layers` must be the result of nixoci.buildLayer, not ${describe l}"
      ) layers
    );
}
