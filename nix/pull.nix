# pullImage and pullImageFromManifest: base images fetched from a registry
# into the store, described so that buildImage's fromImage can use them.
{
  internal,
  nixoci,
  cacert,
  scripts,
}:
let
  inherit (internal) describe;

  # Variables a fetching build takes from the environment of the process
  # that runs it (nix-build in single-user mode, else nix-daemon): where
  # containers/image looks for registry credentials, and proxies.
  impureEnvVars = [
    "REGISTRY_AUTH_FILE"
    "DOCKER_CONFIG"
    "XDG_RUNTIME_DIR"
    "HOME"
    "http_proxy"
    "https_proxy"
    "no_proxy"
    "HTTP_PROXY"
    "HTTPS_PROXY"
    "NO_PROXY"
  ];

  certAttrs =
    if cacert == null then { } else { SSL_CERT_FILE = "${internal.toPath cacert}/etc/ssl/certs/ca-bundle.crt"; };

  # The passthru of a pulled image: what buildImage's fromImage checks, and
  # the copy scripts (to copy the base image on as it is).
  pulled =
    fn: drv: imageName: imageTag:
    let
      image =
        drv
        // {
          isNixociImage = true;
          inherit imageName imageTag;
          imageRefUnsafe = "${imageName}:${imageTag}";
        }
        // scripts.copyScripts {
          inherit
            fn
            image
            imageName
            imageTag
            ;
        };
    in
    image;

  checkOsArch =
    fn: os: arch:
    (builtins.isString os && os != "" || throw "nixoci.${fn}: os must be a non-empty string such as \"linux\", not ${describe os}")
    && (
      builtins.isString arch && arch != ""
      || throw "nixoci.${fn}: arch must be a non-empty string such as \"amd64\" or \"arm64\", not ${describe arch}"
    );
in
{
  # Fetches an image from a registry into the store (a fixed-output
  # derivation running `nixoci copy docker://imageName@imageDigest dir:$out`)
  # and describes it for fromImage. Registry credentials come from the usual
  # auth file ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
  # ~/.docker/config.json) of the user running the build (the nix-daemon's,
  # under a daemon).
  #
  # To get imageDigest and sha256: `skopeo inspect docker://NAME:TAG` gives
  # the digest; build once with sha256 = "" (or any wrong hash) and take the
  # hash Nix reports.
  pullImage =
    {
      # Repository, as in "docker.io/library/alpine" or "127.0.0.1:5000/base".
      imageName,

      # The manifest (or index) digest, "sha256:…". An index is resolved to
      # the image for os/arch/variant.
      imageDigest,

      # The hash of the fetched `dir:` layout (recursive, sha256); `hash`
      # (SRI) is accepted instead.
      sha256 ? null,
      hash ? null,

      # Platform to pick from an index. Default: linux and the build machine's
      # architecture (Docker/OCI naming).
      os ? "linux",
      arch ? internal.hostArch,
      variant ? "",

      # Whether to check the registry's TLS certificate (false also allows
      # plain HTTP). Default: true.
      tlsVerify ? true,

      # Name and tag the pulled image is known by (copy scripts, imageName).
      # Default: imageName and "latest".
      finalImageName ? imageName,
      finalImageTag ? "latest",

      # Derivation name of the fetched layout. Default: from the final name and tag.
      name ? "${internal.safeName finalImageName}-${internal.safeName finalImageTag}",
    }:
    let
      fn = "pullImage";
      outputHash =
        if hash != null then
          hash
        else if sha256 != null then
          sha256
        else
          throw "nixoci.pullImage: give sha256 (or hash) of the fetched image; build once with sha256 = \"\" to learn it";
      checked =
        checkOsArch fn os arch
        && (
          builtins.isString imageDigest && builtins.match "[a-z0-9]+:[a-f0-9]+" imageDigest != null
          || throw "nixoci.pullImage: imageDigest must be a digest such as \"sha256:0123…\" (see `skopeo inspect`), not ${describe imageDigest}"
        )
        && (builtins.isBool tlsVerify || throw "nixoci.pullImage: tlsVerify must be true or false");
      dir = internal.mkBuild "pull" (
        {
          name = "${name}-dir";
          inherit
            imageName
            imageDigest
            os
            arch
            variant
            tlsVerify
            impureEnvVars
            outputHash
            ;
          outputHashMode = "recursive";
          outputHashAlgo = if hash != null then "" else "sha256";
          preferLocalBuild = true;
        }
        // certAttrs
      );
      descriptorDrv = internal.mkBuild "image-from-dir" {
        name = "image-${name}.json";
        dir = "${dir}";
        imageName = finalImageName;
        imageTag = finalImageTag;
        inherit os arch variant;
        preferLocalBuild = true;
      };
    in
    assert checked;
    pulled fn descriptorDrv finalImageName finalImageTag // { layout = dir; };

  # Describes an image whose manifest is kept in a file next to the Nix
  # code, fetching each blob (config and layers) as its own fixed-output
  # derivation keyed by its digest: blobs shared by several images, or by
  # versions of one image, are fetched and stored once.
  #
  # Write the manifest file with the getManifest script in the passthru:
  # `nix run .#base.getManifest > manifest.json` (it needs no hash and
  # prints the manifest for os/arch, resolving an index).
  pullImageFromManifest =
    {
      # Repository within the registry, as in "library/alpine".
      imageName,

      # Path of the JSON manifest file (an OCI or Docker v2 schema 2 image
      # manifest, not an index: getManifest picks the platform).
      imageManifest ? null,

      # Tag that getManifest fetches and the pulled image is known by.
      # Default: "latest".
      imageTag ? "latest",

      # Platform that getManifest picks from an index, and that the
      # descriptor records. Default: linux and the build machine's architecture.
      os ? "linux",
      arch ? internal.hostArch,
      variant ? "",

      # Whether to check the registry's TLS certificate (false also allows
      # plain HTTP). Default: true.
      tlsVerify ? true,

      # Registry host (and port). Default: "docker.io".
      registryUrl ? "docker.io",
    }:
    let
      fn = "pullImageFromManifest";
      # The blobs are fetched through the tag (containers/image opens an
      # image, not a bare repository); they are found by digest whatever
      # the tag points to now, as long as the registry still has them.
      reference = "docker://${registryUrl}/${imageName}:${imageTag}";
      manifestFile =
        if imageManifest == null then
          throw "nixoci.pullImageFromManifest: give imageManifest, the path of the manifest JSON file; write it with `nix run <this attribute>.getManifest > manifest.json`"
        else
          imageManifest;
      manifest = builtins.fromJSON (builtins.readFile manifestFile);
      blobDescriptors =
        if manifest ? manifests then
          throw "nixoci.pullImageFromManifest: ${toString imageManifest} is an image index, not an image manifest; write the manifest for one platform with the getManifest script (it picks os/arch from the index)"
        else if !(manifest ? config && manifest ? layers) then
          throw "nixoci.pullImageFromManifest: ${toString imageManifest} has no \"config\" and \"layers\": it must be an OCI or Docker v2 schema 2 image manifest"
        else
          [ manifest.config ] ++ manifest.layers;
      fetchBlob =
        desc:
        let
          parts = builtins.match "([a-z0-9]+):([a-f0-9]+)" desc.digest;
          algo = builtins.elemAt parts 0;
          hex = builtins.elemAt parts 1;
        in
        if parts == null || !(builtins.elem algo [ "sha256" "sha512" ]) then
          throw "nixoci.pullImageFromManifest: blob digest ${builtins.toJSON desc.digest} in ${toString imageManifest} is not a sha256 or sha512 digest"
        else
          internal.mkBuild "fetch-blob" (
            {
              # Keyed by the digest only, so the same blob is one store path
              # whatever image or registry it comes from.
              name = "blob-${algo}-${hex}";
              inherit reference tlsVerify impureEnvVars;
              inherit (desc) digest;
              size = desc.size or (-1);
              outputHashMode = "flat";
              outputHashAlgo = algo;
              outputHash = hex;
              preferLocalBuild = true;
            }
            // certAttrs
          );
      blobs = builtins.listToAttrs (
        map (d: {
          name = d.digest;
          value = "${fetchBlob d}";
        }) blobDescriptors
      );
      checked =
        checkOsArch fn os arch
        && (builtins.isBool tlsVerify || throw "nixoci.pullImageFromManifest: tlsVerify must be true or false");
      descriptorDrv = internal.mkBuild "image-from-manifest" {
        name = "image-${internal.safeName imageName}-${internal.safeName imageTag}.json";
        manifest = "${manifestFile}";
        inherit blobs os arch variant;
        imageName = "${registryUrl}/${imageName}";
        inherit imageTag;
        preferLocalBuild = true;
      };
      getManifest = scripts.writeScript {
        name = "get-manifest";
        fn = "${fn} (getManifest)";
        text = ''
          # Prints the manifest of ${registryUrl}/${imageName}:${imageTag} for ${os}/${arch}.
          # Arguments are passed to `nixoci get-manifest`.
          exec ${scripts.quote "${nixoci}/bin/nixoci"} nix-build get-manifest \
            --os ${scripts.quote os} --arch ${scripts.quote arch} --variant ${scripts.quote variant} \
            --tls-verify=${if tlsVerify then "true" else "false"} "$@" \
            ${scripts.quote reference}
        '';
      };
    in
    assert checked;
    (pulled fn descriptorDrv "${registryUrl}/${imageName}" imageTag) // { inherit getManifest; };
}
