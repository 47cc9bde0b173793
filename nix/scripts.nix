# Executable scripts written without stdenv: the copyTo* passthru of images
# and pullImageFromManifest's getManifest.
{
  internal,
  nixoci,
  # shell fn: the runtimeShell path, or a throw naming the function `fn`.
  shell,
}:
rec {
  # 'text' quoted for a POSIX shell.
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # writeScript { name; text; }: a derivation holding bin/<name>, the text
  # run by runtimeShell. meta.mainProgram is name, so `nix run` finds it.
  writeScript =
    {
      name,
      text,
      # Function named in the error when runtimeShell is missing.
      fn ? "writeScript",
    }:
    internal.mkBuild "write-script" {
      name = internal.safeName name;
      scriptName = name;
      text = "#!${shell fn}\n" + text;
    }
    // {
      meta.mainProgram = name;
    };

  # The copy scripts of an image.
  copyScripts =
    {
      fn,
      image,
      imageName,
      imageTag,
    }:
    let
      bin = quote "${nixoci}/bin/nixoci";
      src = quote "nix:${image}";
      ref = "${imageName}:${imageTag}";
      copyScript =
        scriptName: dest:
        writeScript {
          name = scriptName;
          fn = "${fn} (${scriptName})";
          text = ''
            # Copies the image ${ref} to ${dest}.
            # Arguments are passed to `nixoci copy` (see `nixoci copy --help`).
            exec ${bin} copy "$@" ${src} ${quote dest}
          '';
        };
    in
    {
      # `nix run .#image.copyToRegistry [-- nixoci copy flags]`: pushes to docker://name:tag.
      copyToRegistry = copyScript "copy-to-registry" "docker://${ref}";
      # Loads into the Docker daemon as name:tag.
      copyToDockerDaemon = copyScript "copy-to-docker-daemon" "docker-daemon:${ref}";
      # Copies into Podman's containers-storage as name:tag.
      copyToPodman = copyScript "copy-to-podman" "containers-storage:${ref}";
      # `copy-to DEST [flags]`: copies to any containers/image destination.
      copyTo = writeScript {
        name = "copy-to";
        fn = "${fn} (copy-to)";
        text = ''
          # Copies the image ${ref} to the destination given as first argument.
          # Further arguments are passed to `nixoci copy`.
          if [ "$#" -lt 1 ]; then
            echo "usage: copy-to DESTINATION [nixoci copy flags...]" >&2
            echo "  e.g. copy-to oci:/tmp/layout:${imageTag} or copy-to docker://registry.example.com/app:${imageTag}" >&2
            exit 2
          fi
          dest=$1
          shift
          exec ${bin} copy "$@" ${src} "$dest"
        '';
      };
    };
}
