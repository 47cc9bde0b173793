# Example images, built with nixpkgs. The flake exposes them as
# examples.<system>; run one with, for example,
#   nix run .#examples.x86_64-linux.hello.copyToDockerDaemon
#   docker run --rm hello:<tag printed by the copy>
{
  # nixpkgs.
  pkgs,
  # The nix/ library, instantiated (the flake's lib.<system>).
  nixoci,
}:
let
  # A root filesystem with bash and coreutils in /bin.
  bashRoot = pkgs.buildEnv {
    name = "bash-root";
    paths = [
      pkgs.bashInteractive
      pkgs.coreutils
    ];
    pathsToLink = [ "/bin" ];
  };

  # A small web application and its dependencies.
  python = pkgs.python3.withPackages (ps: [
    ps.flask
    ps.gunicorn
  ]);
  app = pkgs.writeTextDir "app/main.py" ''
    from flask import Flask

    app = Flask(__name__)


    @app.route("/")
    def index():
        return "hello from nixoci\n"
  '';
in
rec {
  # The smallest useful image: GNU hello, its closure in one layer.
  hello = nixoci.buildImage {
    name = "hello";
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
  };

  # bash and coreutils at /bin, as in a conventional image.
  bash = nixoci.buildImage {
    name = "bash";
    copyToRoot = bashRoot;
    config = {
      Cmd = [ "/bin/bash" ];
      Env = [ "PATH=/bin" ];
    };
  };

  # An image on a base image. The base can be any buildImage result, or a
  # registry image fetched with pullImage, for example
  #   nixoci.pullImage {
  #     imageName = "docker.io/library/alpine";
  #     imageDigest = "sha256:…";  # `skopeo inspect docker://alpine:3.20`
  #     sha256 = "";               # build once; Nix prints the hash to use
  #   };
  fromImage = nixoci.buildImage {
    name = "hello-on-bash";
    fromImage = bash;
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
  };

  # A large closure split into up to 100 layers by popularity, so that
  # images sharing glibc, python and the like share those layers.
  layered = nixoci.buildImage {
    name = "layered";
    maxLayers = 100;
    copyToRoot = bashRoot;
    config.Cmd = [
      "${python}/bin/python3"
      "-c"
      "import flask; print(flask.__name__)"
    ];
  };

  # A data directory owned by an unprivileged user.
  perms =
    let
      root = pkgs.runCommand "perms-root" { } ''
        mkdir -p $out/data $out/etc
        echo 'app:x:1000:1000::/data:/bin/sh' > $out/etc/passwd
        echo 'app:x:1000:' > $out/etc/group
      '';
    in
    nixoci.buildImage {
      name = "perms";
      copyToRoot = [
        root
        bashRoot
      ];
      perms = [
        {
          path = root;
          regex = "^${root}/data$";
          mode = "0700";
          uid = 1000;
          gid = 1000;
        }
      ];
      config = {
        User = "1000:1000";
        WorkingDir = "/data";
        Cmd = [
          "/bin/bash"
          "-c"
          "ls -ld /data && touch /data/ok && echo writable"
        ];
      };
    };

  # Nix inside the image, with a database that knows every store path in it,
  # owned by an unprivileged user.
  nixDatabase = nixoci.buildImage {
    name = "nix-database";
    copyToRoot = pkgs.buildEnv {
      name = "nix-root";
      paths = [
        pkgs.nix
        pkgs.bashInteractive
        pkgs.coreutils
      ];
      pathsToLink = [ "/bin" ];
    };
    initializeNixDatabase = true;
    nixUid = 1000;
    nixGid = 1000;
    config = {
      User = "1000:1000";
      Env = [
        "PATH=/bin"
        "USER=nix"
        "NIX_CONFIG=build-users-group =\nsandbox = false"
      ];
      Cmd = [
        "/bin/nix-store"
        "--verify"
        "--check-contents"
      ];
    };
  };

  # A uwsgi-like web application: the dependencies (python and its
  # packages) in a layer of their own, shared by every version of the
  # application, which only adds a small layer with its code.
  pythonDeps = nixoci.buildLayer {
    deps = [ python ];
    maxLayers = 20;
    metadata.created_by = "python dependencies";
  };
  webapp = nixoci.buildImage {
    name = "webapp";
    layers = [ pythonDeps ];
    copyToRoot = app;
    config = {
      WorkingDir = "/app";
      ExposedPorts."8000/tcp" = { };
      Cmd = [
        "${python}/bin/gunicorn"
        "--bind"
        "0.0.0.0:8000"
        "main:app"
      ];
    };
  };
}
