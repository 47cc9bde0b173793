# The image of scripts/demo.sh, built with the nix/ library and builtins
# only: no nixpkgs, no stdenv. A tiny application, a shared "library" and
# busybox, in three layers.
{
  # Store path holding bin/nixoci (demo.sh adds the one it builds).
  nixoci,
  # Store path holding a static busybox as bin/busybox and bin/sh.
  busybox,
  # What the application prints: the one file a developer edits.
  message,
  # Registry host:port the image is named for.
  registry ? "127.0.0.1:5000",
  # The digest cache directory (absolute path string), or null.
  digestCache ? null,
}:
let
  lib = import ../nix {
    nixoci = builtins.storePath nixoci;
    runtimeShell = "/bin/sh";
    inherit digestCache;
  };
  bb = builtins.storePath busybox;

  # mk name script: a derivation built by busybox's sh, with busybox's
  # applets on PATH.
  mk =
    name: script: extra:
    builtins.derivation (
      {
        inherit name;
        system = builtins.currentSystem;
        builder = "${bb}/bin/sh";
        args = [
          "-c"
          script
        ];
        PATH = "${bb}/bin";
      }
      // extra
    );

  # A dependency the application shares with other images: 3 MB of data,
  # enough for its layer to be worth skipping.
  libgreet = mk "libgreet-1.0" ''
    busybox mkdir -p $out/share/greet
    busybox yes 'greetings from a shared library' | busybox head -c 3000000 > $out/share/greet/words
  '' { };

  # The application: a script that prints its message file and a line of
  # the library.
  app =
    mk "demo-app"
      ''
        busybox mkdir -p $out/bin $out/share
        printf '%s\n' "$message" > $out/share/message
        printf '#!${bb}/bin/sh\n${bb}/bin/busybox cat %s/share/message\n${bb}/bin/busybox head -n 1 ${libgreet}/share/greet/words\n' "$out" > $out/bin/demo-app
        busybox chmod +x $out/bin/demo-app
      ''
      { inherit message; };
in
lib.buildImage {
  name = "${registry}/nixoci-demo";
  tag = "latest";
  # busybox, libgreet and the application each get a layer: a change of
  # the application leaves the other two as they were.
  maxLayers = 3;
  config.Cmd = [ "${app}/bin/demo-app" ];
}
