package nix

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
)

// The nix/ library as a drop-in for dockerTools: stand-in packages shaped
// like nixpkgs' (a makeWrapper-wrapped program, bashInteractive and binSh
// that both provide bin/sh, a lib symlink to a directory, buildEnv), the
// dockerTools arguments, and the dockerTools manual's buildImage examples
// with only the function prefix renamed.

const dtArgs = `nonce ? "", vmKernel ? null, vmModules ? null, qemu ? null`

// dtLets are the stand-ins and the library with every tool from the host:
// Debian's coreutils and fakeroot under /usr, a shadow stand-in and the
// runAsRoot VM parts. @NIXDIR@ and @NIXOCI@ are replaced.
const dtLets = `
  dt = import @NIXDIR@ {
    nixoci = builtins.storePath @NIXOCI@;
    runtimeShell = "${bb}/bin/sh";
    nix = "/usr";
    coreutils = "/usr";
    fakeroot = "/usr";
    proot = "/usr";
    shadow = shadow;
    inherit vmKernel vmModules qemu;
    # These tests are about the images, not the accelerator (tests/vm
    # covers KVM and the fallback): TCG spares them the KVM attempt.
    runAsRootAccel = "tcg";
  };
  # The library without the tools, for the evaluation errors.
  bareDt = import @NIXDIR@ { nixoci = builtins.storePath @NIXOCI@; runtimeShell = "${bb}/bin/sh"; };

  # busybox applets (not sh) in bin/.
  applets = mk "applets" ''
    mkdir -p $out/bin
    for a in cat echo id ls readlink stat test; do ln -s ${bb}/bin/busybox $out/bin/$a; done
  '';

  # A program wrapped as makeWrapper wraps one: bin/app execs the hidden
  # bin/.app-wrapped of its own store path.
  wrapped = mk "wrapped-app-1.0" ''
    mkdir -p $out/bin
    echo '#!${bb}/bin/sh' > $out/bin/.app-wrapped
    echo 'echo "wrapped app runs: $*"' >> $out/bin/.app-wrapped
    echo '#!${bb}/bin/sh' > $out/bin/app
    echo "exec $out/bin/.app-wrapped \"\$@\"" >> $out/bin/app
    chmod 555 $out/bin/app $out/bin/.app-wrapped
  '';

  # bashInteractive: bin/bash is a shell and bin/sh links to it.
  bash = mk "bash-interactive-5.2" ''
    mkdir -p $out/bin $out/etc
    echo '#!${bb}/bin/sh' > $out/bin/bash
    echo 'exec ${bb}/bin/busybox sh "$@"' >> $out/bin/bash
    chmod 555 $out/bin/bash
    ln -s bash $out/bin/sh
    echo "motd of bash" > $out/etc/motd
    echo same > $out/etc/shells
  '';
  # dockerTools.binSh: bin/sh, a symlink into bash's store path.
  binSh = mk "bin-sh" ''
    mkdir -p $out/bin $out/etc
    ln -s ${bash}/bin/bash $out/bin/sh
    echo "motd of binSh" > $out/etc/motd
    echo same > $out/etc/shells
  '';

  # A library whose lib is a symlink to its lib64 directory, and a package
  # with a lib directory.
  libfoo = mk "libfoo-1.0" ''
    mkdir -p $out/lib64
    echo foo > $out/lib64/libfoo.so
    ln -s lib64 $out/lib
  '';
  libbar = mk "libbar-2.0" ''
    mkdir -p $out/lib
    echo bar > $out/lib/libbar.so
  '';

  # nixpkgs' hello and redis, and buildEnv linking what pathsToLink names.
  hello = mk "hello-2.12" ''
    mkdir -p $out/bin
    echo '#!${bb}/bin/sh' > $out/bin/hello
    echo 'echo "Hello, world!"' >> $out/bin/hello
    chmod 555 $out/bin/hello
  '';
  redis = mk "redis-7.2" ''
    mkdir -p $out/bin
    echo '#!${bb}/bin/sh' > $out/bin/redis-server
    echo 'echo "redis-server ready in $PWD"' >> $out/bin/redis-server
    chmod 555 $out/bin/redis-server
  '';
  buildEnv = { name, paths, pathsToLink ? [ "/" ] }: mk name ''
    for dir in ${toString pathsToLink}; do
      mkdir -p $out$dir
      for p in ${toString paths}; do
        for f in $p$dir/*; do ln -s $f $out$dir/; done
      done
    done
  '';
  # dockerTools.fakeNss.
  fakeNss = mk "fake-nss" ''
    mkdir -p $out/etc $out/var/empty
    echo 'root:x:0:0:root user:/var/empty:/bin/sh' > $out/etc/passwd
    echo 'nobody:x:65534:65534:nobody:/var/empty:/bin/sh' >> $out/etc/passwd
    echo 'root:x:0:' > $out/etc/group
    echo 'nobody:x:65534:' >> $out/etc/group
    echo 'hosts: files dns' > $out/etc/nsswitch.conf
  '';
  # shadow: groupadd -r NAME and useradd -r -g GROUP NAME, editing the
  # files shadowSetup creates.
  shadow = mk "shadow-4.14" ''
    mkdir -p $out/bin
    cat > $out/bin/groupadd <<'EOF'
    #!${bb}/bin/sh
    for name; do :; done
    echo "$name:x:990:" >> /etc/group
    echo "$name:!::" >> /etc/gshadow
    EOF
    cat > $out/bin/useradd <<'EOF'
    #!${bb}/bin/sh
    while [ "$#" -gt 1 ]; do
      case $1 in -g) group=$2; shift ;; esac
      shift
    done
    gid=$(${bb}/bin/busybox awk -F: -v g="$group" '$1 == g { print $3 }' /etc/group)
    echo "$1:x:990:$gid::/var/empty:/bin/false" >> /etc/passwd
    echo "$1:!:1::::::" >> /etc/shadow
    EOF
    chmod 555 $out/bin/groupadd $out/bin/useradd
  '';
`

const dtAttrs = `
  wrappedApp = dt.buildImage {
    name = "nixoci-test/dt-wrapped";
    tag = "t";
    copyToRoot = [ wrapped ];
    config.Cmd = [ "/bin/app" "hello" ];
  };
  overlap = dt.buildImage {
    name = "nixoci-test/dt-overlap";
    tag = "t${nonce}";
    copyToRoot = [ bash binSh libfoo libbar applets ];
    config.Cmd = [ "/bin/sh" "-c" "readlink /bin/sh; cat /etc/motd; ls /lib" ];
  };
  overlapReversed = dt.buildImage {
    name = "nixoci-test/dt-overlap-reversed";
    tag = "t";
    contents = [ binSh bash libfoo libbar applets ];
    copyToRoot = [ ];
    config.Cmd = [ "/bin/sh" "-c" "readlink /bin/sh; cat /etc/motd" ];
  };
  dirlinksKept = dt.buildImage {
    name = "nixoci-test/dt-dirlinks-kept";
    copyToRoot = [ libfoo libbar ];
    keepContentsDirlinks = true;
  };
  customised = dt.buildImage {
    name = "nixoci-test/dt-customised";
    tag = "t";
    copyToRoot = [ applets fakeNss ];
    extraCommands = ''
      mkdir -p tmp data
      chmod 1777 tmp
      echo extra > etc/extra
      chmod 0640 etc/extra
    '';
    fakeRootCommands = ''
      chown 1000:1000 data
      mkdir -p home/app/.cache
      chown -R 1001:1002 home/app
    '';
    config.Cmd = [ "/bin/stat" "-c" "%n %a %u:%g" "/tmp" "/data" "/etc/extra" "/home/app" "/home/app/.cache" "/bin" "/etc/passwd" ];
  };
  fakechroot = dt.buildImage {
    name = "nixoci-test/dt-fakechroot";
    tag = "t";
    copyToRoot = applets;
    # Under proot the tree is /, and the store is there too.
    fakeRootCommands = ''
      mkdir -p /etc /srv
      echo "written to / in the chroot" > /etc/fromchroot
      chown 1000:1000 /srv
      test -x ${bb}/bin/busybox
    '';
    enableFakechroot = true;
    config.Cmd = [ "${bb}/bin/busybox" "sh" "-c" "cat /etc/fromchroot; stat -c '%n %u:%g' /srv" ];
  };
  owned = dt.buildImage {
    name = "nixoci-test/dt-owned";
    tag = "t";
    copyToRoot = applets;
    uid = 1000;
    gid = 1001;
    uname = "app";
    gname = "grp";
    mtime = "2024-01-02T03:04:05Z";
    config.Cmd = [ "/bin/stat" "-c" "%u:%g %Y" "/bin/ls" "${bb}/bin/busybox" ];
  };
  noStore = dt.buildImage {
    name = "nixoci-test/dt-no-store";
    copyToRoot = [ wrapped ];
    includeStorePaths = false;
    config.Cmd = [ "${hello}/bin/hello" ];
  };

  # The dockerTools manual's buildImage examples, with dockerTools. renamed.
  redisExample = dt.buildImage {
    name = "redis";
    tag = "latest";

    copyToRoot = buildEnv {
      name = "image-root";
      paths = [ redis ];
      pathsToLink = [ "/bin" ];
    };

    runAsRoot = ''
      mkdir -p /data
    '';

    config = {
      Cmd = [ "/bin/redis-server" ];
      WorkingDir = "/data";
      Volumes = {
        "/data" = { };
      };
    };
  };
  helloNow = dt.buildImage {
    name = "hello";
    tag = "latest";

    created = "now";

    copyToRoot = buildEnv {
      name = "image-root";
      paths = [ hello ];
      pathsToLink = [ "/bin" ];
    };

    config.Cmd = [ "/bin/hello" ];
  };
  shadowBasic = dt.buildImage {
    name = "shadow-basic";
    tag = "latest";

    copyToRoot = [ hello ];

    runAsRoot = ''
      ${dt.shadowSetup}
      groupadd -r hello
      useradd -r -g hello hello
      mkdir /data
      chown hello:hello /data
    '';

    config = {
      Cmd = [ "/bin/hello" ];
      WorkingDir = "/data";
    };
  };
  imageWithPasswd = dt.buildImage {
    name = "image-with-passwd";
    tag = "latest";

    copyToRoot = [ fakeNss hello ];

    config = {
      Cmd = [ "/bin/hello" ];
    };
  };
  envHelpers = dt.buildImage {
    name = "env-helpers";
    tag = "latest";

    copyToRoot = [
      hello
      binSh
    ];
  };
`

// dtEnv is a Nix environment with the library under test and the file of
// dtLets and dtAttrs.
type dtEnv struct {
	*nixEnv
	file string
}

func newDTEnv(t *testing.T, withNixoci bool) *dtEnv {
	t.Helper()
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	if withNixoci {
		e.addNixoci(t, dir)
	}
	nixoci := e.nixoci
	if nixoci == "" {
		nixoci = e.busybox // evaluation only
	}
	lets := strings.NewReplacer("@NIXDIR@", filepath.Join(testenv.ModuleRoot(), "nix"), "@NIXOCI@", fmt.Sprintf("%q", nixoci)).Replace(dtLets)
	return &dtEnv{nixEnv: e, file: e.writeNix(t, dir, "dockertools.nix", dtArgs, lets, dtAttrs)}
}

// load builds attr and loads it into Docker with the copyToDockerDaemon
// script, returning the output and the image reference.
func (e *dtEnv) load(t *testing.T, attr string, args ...string) (string, string) {
	t.Helper()
	out := e.build(t, e.file, attr, args...)
	doc := loadImageDoc(t, out)
	tag := doc.Tag
	if tag == "" {
		tag = strings.SplitN(filepath.Base(out), "-", 2)[0]
	}
	ref := doc.Name + ":" + tag
	e.nixRunArgs(t, e.file, attr+".copyToDockerDaemon", args)
	t.Cleanup(func() { e.Run(time.Minute, "docker", "rmi", "-f", ref) })
	return out, ref
}

// dockerRun runs ref (with args as the command, if any) without network.
func (e *dtEnv) dockerRun(t *testing.T, ref string, args ...string) string {
	t.Helper()
	return e.Must(t, 2*time.Minute, "docker", append([]string{"run", "--rm", "--network", "none", ref}, args...)...)
}

// TestDockerToolsImages builds images from stand-ins shaped like nixpkgs
// packages with dockerTools' arguments and checks them in Docker.
func TestDockerToolsImages(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireDocker(t)
	testenv.RequireTools(t, "fakeroot")
	e := newDTEnv(t, true)

	t.Run("wrapped program runs from copyToRoot", func(t *testing.T) {
		out, ref := e.load(t, "wrappedApp")
		if got, want := e.dockerRun(t, ref), "wrapped app runs: hello\n"; got != want {
			t.Errorf("docker run %s printed %q, want %q", ref, got, want)
		}
		// The wrapper's own store path is in the store as well as at /.
		doc := loadImageDoc(t, out)
		var store, moved int
		for _, l := range doc.Layers {
			for _, p := range l.Paths {
				if strings.HasSuffix(p.Path, "-wrapped-app-1.0") {
					if len(p.Rewrite) > 0 {
						moved++
					} else {
						store++
					}
				}
			}
		}
		if store != 1 || moved != 1 {
			t.Errorf("%s holds the wrapped program %d times in the store and %d times at /, want once each", out, store, moved)
		}
	})

	t.Run("overlapping contents merge, the later wins", func(t *testing.T) {
		nonce := fmt.Sprint(time.Now().UnixNano())
		r := e.Run(10*time.Minute, "nix-build", e.file, "-A", "overlap", "--no-out-link", "--argstr", "nonce", nonce)
		if r.Err != nil {
			t.Fatalf("nix-build overlap: %v\n%s", r.Err, r.Stderr)
		}
		_, ref := e.load(t, "overlap", "--argstr", "nonce", nonce)
		bash := e.buildPathOf(t, "bash")
		want := bash + "/bin/bash\nmotd of binSh\nlibbar.so\nlibfoo.so\n"
		if got := e.dockerRun(t, ref); got != want {
			t.Errorf("docker run %s printed %q, want %q (binSh's /bin/sh and motd, lib merged)", ref, got, want)
		}
		binSh := e.buildPathOf(t, "binSh")
		for _, line := range []string{
			"/bin/sh: " + binSh + " replaces the one from " + bash,
			"/etc/motd: " + binSh + " replaces the one from " + bash,
		} {
			if !strings.Contains(r.Stderr, line) {
				t.Errorf("build log does not say %q:\n%s", line, r.Stderr)
			}
		}
		if strings.Contains(r.Stderr, "/etc/shells") {
			t.Errorf("build log mentions the identical /etc/shells:\n%s", r.Stderr)
		}

		_, ref = e.load(t, "overlapReversed")
		if got, want := e.dockerRun(t, ref), "bash\nmotd of bash\n"; got != want {
			t.Errorf("docker run %s printed %q, want %q (bash's /bin/sh and motd)", ref, got, want)
		}
	})

	t.Run("keepContentsDirlinks keeps the lib symlink", func(t *testing.T) {
		r := e.Run(10*time.Minute, "nix-build", e.file, "-A", "dirlinksKept", "--no-out-link")
		if r.Err == nil {
			t.Fatal("nix-build dirlinksKept succeeded, want the symlink against the directory to fail")
		}
		for _, want := range []string{e.buildPathOf(t, "libfoo"), e.buildPathOf(t, "libbar"), "/lib", "a symlink", "a directory"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("nix-build error does not mention %q:\n%s", want, testenv.Tail(r.Stderr, 20))
			}
		}
	})

	t.Run("extraCommands and fakeRootCommands", func(t *testing.T) {
		out, ref := e.load(t, "customised")
		want := "/tmp 1777 0:0\n/data 755 1000:1000\n/etc/extra 640 0:0\n/home/app 755 1001:1002\n/home/app/.cache 755 1001:1002\n/bin 555 0:0\n/etc/passwd 444 0:0\n"
		if got := e.dockerRun(t, ref); got != want {
			t.Errorf("docker run %s printed %q, want %q", ref, got, want)
		}
		doc := loadImageDoc(t, out)
		for _, l := range doc.Layers {
			if l.Tar != "" || l.Blob != "" {
				t.Errorf("layer %s is served from %s%s, want store paths", l.Digest, l.Tar, l.Blob)
			}
		}
	})

	t.Run("enableFakechroot", func(t *testing.T) {
		testenv.RequireTools(t, "proot")
		_, ref := e.load(t, "fakechroot")
		if got, want := e.dockerRun(t, ref), "written to / in the chroot\n/srv 1000:1000\n"; got != want {
			t.Errorf("docker run %s printed %q, want %q", ref, got, want)
		}
	})

	t.Run("uid, gid, uname, gname and mtime", func(t *testing.T) {
		_, ref := e.load(t, "owned")
		if got, want := e.dockerRun(t, ref), "1000:1001 1704164645\n1000:1001 1704164645\n"; got != want {
			t.Errorf("docker run %s printed %q, want %q", ref, got, want)
		}
		layout := filepath.Join(t.TempDir(), "oci")
		e.Must(t, 2*time.Minute, filepath.Join(e.nixoci, "bin", "nixoci"), "copy", "nix:"+e.build(t, e.file, "owned"), "oci:"+layout+":t")
		names := ownerNames(t, layout)
		if names["bin/ls"] != "app:grp" {
			t.Errorf("bin/ls is owned by %q in the layer, want app:grp", names["bin/ls"])
		}
	})

	t.Run("includeStorePaths = false", func(t *testing.T) {
		out := e.build(t, e.file, "noStore")
		doc := loadImageDoc(t, out)
		n := 0
		for _, l := range doc.Layers {
			for _, p := range l.Paths {
				n++
				if len(p.Rewrite) == 0 {
					t.Errorf("%s holds %s in the store, want only the relocated content", out, p.Path)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s has %d paths, want the one relocated copyToRoot path", out, n)
		}
	})

	t.Run("manual: hello with created = now", func(t *testing.T) {
		out, ref := e.load(t, "helloNow")
		if got := e.dockerRun(t, ref); got != "Hello, world!\n" {
			t.Errorf("docker run %s printed %q, want Hello, world!", ref, got)
		}
		created := strings.TrimSpace(e.Must(t, time.Minute, "docker", "image", "inspect", "--format", "{{.Created}}", ref))
		c, err := time.Parse(time.RFC3339Nano, created)
		if err != nil {
			t.Fatalf("docker image inspect %s: created %q: %v", ref, created, err)
		}
		// The build time: when Nix registered the output (an earlier test
		// run may have built it).
		var info []struct {
			RegistrationTime int64 `json:"registrationTime"`
		}
		if err := json.Unmarshal([]byte(e.Must(t, time.Minute, "nix", "path-info", "--json", out)), &info); err != nil || len(info) != 1 {
			t.Fatalf("nix path-info --json %s: %v", out, err)
		}
		built := time.Unix(info[0].RegistrationTime, 0)
		if d := c.Sub(built); d < -time.Minute || d > time.Minute {
			t.Errorf("%s was created %s, want the build time %s", ref, c, built)
		}
	})

	t.Run("manual: fakeNss", func(t *testing.T) {
		_, ref := e.load(t, "imageWithPasswd")
		if got := e.dockerRun(t, ref); got != "Hello, world!\n" {
			t.Errorf("docker run %s printed %q, want Hello, world!", ref, got)
		}
		bb := e.busybox + "/bin/busybox"
		if got := e.dockerRun(t, ref, bb, "id", "-u", "nobody"); got != "65534\n" {
			t.Errorf("docker run %s id -u nobody printed %q, want 65534 (from fakeNss's /etc/passwd)", ref, got)
		}
	})

	t.Run("manual: binSh", func(t *testing.T) {
		_, ref := e.load(t, "envHelpers")
		if got := e.dockerRun(t, ref, "/bin/sh", "-c", "echo shell works; /bin/hello"); got != "shell works\nHello, world!\n" {
			t.Errorf("docker run %s /bin/sh -c … printed %q", ref, got)
		}
	})
}

// TestDockerToolsRunAsRoot builds the manual's runAsRoot examples (redis,
// shadow-basic), each in a qemu VM (10–20 s under TCG).
func TestDockerToolsRunAsRoot(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireDocker(t)
	kernel, modules, qemu := vmParts(t)
	e := newDTEnv(t, true)
	vm := []string{"--argstr", "vmKernel", kernel, "--argstr", "vmModules", modules, "--argstr", "qemu", qemu}

	t.Run("manual: redis", func(t *testing.T) {
		out, ref := e.load(t, "redisExample", vm...)
		if got, want := e.dockerRun(t, ref), "redis-server ready in /data\n"; got != want {
			t.Errorf("docker run %s printed %q, want %q", ref, got, want)
		}
		doc := loadImageDoc(t, out)
		last := doc.Layers[len(doc.Layers)-1]
		if last.Tar == "" {
			t.Fatalf("%s: the last layer is not runAsRoot's", out)
		}
		names := map[string]bool{}
		for _, te := range testenv.ReadTar(t, last.Tar) {
			names[te.Header.Name] = true
		}
		if !names["data/"] {
			t.Errorf("runAsRoot layer %s has no data/: %v", last.Tar, names)
		}
	})

	t.Run("manual: shadow-basic", func(t *testing.T) {
		_, ref := e.load(t, "shadowBasic", vm...)
		if got := e.dockerRun(t, ref); got != "Hello, world!\n" {
			t.Errorf("docker run %s printed %q, want Hello, world!", ref, got)
		}
		bb := e.busybox + "/bin/busybox"
		if got, want := e.dockerRun(t, ref, bb, "stat", "-c", "%U:%G %u", "/data"), "hello:hello 990\n"; got != want {
			t.Errorf("docker run %s stat /data printed %q, want %q", ref, got, want)
		}
	})
}

// TestDockerToolsArguments evaluates the dockerTools names and the
// results' passthru and override.
func TestDockerToolsArguments(t *testing.T) {
	testenv.RequireNix(t)
	e := newDTEnv(t, false)
	eval := func(t *testing.T, expr string) string {
		t.Helper()
		// Evaluate expr in the scope of the test file's bindings.
		file := filepath.Join(t.TempDir(), "eval.nix")
		src := testenv.ReadFile(t, e.file)
		body := strings.Replace(string(src), "\nin\n{\n", "\nin\n{\n  __eval = "+expr+";\n", 1)
		testenv.WriteFile(t, file, body, 0o644)
		r := e.Run(time.Minute, "nix-instantiate", "--eval", "--strict", "--json", file, "-A", "__eval")
		if r.Err != nil {
			return "error: " + r.Stderr
		}
		return strings.TrimSpace(r.Stdout)
	}
	tests := []struct {
		name, expr string
		want       string // JSON, or substrings of the error after "error: "
	}{
		{"dockerTools names", `let i = dt.buildImage { name = "x"; architecture = "arm64"; compressor = "zstd"; includeNixDB = true; copyToRoot = applets; contents = [ ]; }; in { inherit (i.drvAttrs) arch variant compression initializeNixDatabase; n = builtins.length i.drvAttrs.copyToRoot; }`,
			`{"arch":"arm64","compression":"zstd","initializeNixDatabase":true,"n":1,"variant":""}`},
		{"compressor gz and none", `map (c: (dt.buildImage { name = "x"; compressor = c; }).drvAttrs.compression) [ "gz" "none" ]`, `["gzip","none"]`},
		{"fromImageName and fromImageTag passed on", `let i = dt.buildImage { name = "x"; fromImageName = "base"; fromImageTag = "v1"; }; in [ i.drvAttrs.fromImageName i.drvAttrs.fromImageTag ]`, `["base","v1"]`},
		{"passthru and buildArgs", `let i = dt.buildImage { name = "x"; passthru.extra = 42; }; in [ i.extra i.buildArgs.name ]`, `[42,"x"]`},
		{"override", `let i = dt.buildImage { name = "x"; tag = "a"; }; in [ (i.override { tag = "b"; }).imageTag (i.override (old: { tag = old.tag + "c"; })).imageTag ((i.override { tag = "b"; }).override { name = "y"; }).imageRefUnsafe ]`,
			`["b","ac","y:b"]`},
		{"override renamed arguments", `((dt.buildImage { name = "x"; compressor = "zstd"; }).override { tag = "t"; }).drvAttrs.compression`, `"zstd"`},
		{"buildLayer contents and override", `let l = dt.buildLayer { contents = applets; passthru.p = 1; }; in [ (builtins.length l.drvAttrs.copyToRoot) l.p (l.override { maxLayers = 3; }).drvAttrs.maxLayers ]`, `[1,1,3]`},
		{"owner", `(dt.buildImage { name = "x"; uid = 7; }).drvAttrs.owner`, `{"gid":0,"gname":"root","uid":7,"uname":"root"}`},
		{"nixUid follows uid", `let d = (dt.buildImage { name = "x"; uid = 7; gid = 8; }).drvAttrs; in [ d.nixUid d.nixGid ]`, `[7,8]`},
		{"architecture and arch differ", `(dt.buildImage { name = "x"; arch = "amd64"; architecture = "arm64"; }).drvPath`, "error: nixoci.buildImage|arch|architecture|not both"},
		{"compressor unknown", `(dt.buildImage { name = "x"; compressor = "xz"; }).drvPath`, `error: nixoci.buildImage|compressor|"gz", "zstd" or "none"|"xz"`},
		{"includeNixDB and initializeNixDatabase differ", `(dt.buildImage { name = "x"; initializeNixDatabase = false; includeNixDB = true; }).drvPath`, "error: nixoci.buildImage|initializeNixDatabase|includeNixDB"},
		{"contents and copyToRoot", `(dt.buildImage { name = "x"; contents = applets; copyToRoot = [ bash ]; }).drvPath`, "error: nixoci.buildImage|copyToRoot|contents|not both"},
		{"fromImageName not a string", `(dt.buildImage { name = "x"; fromImageName = 1; }).drvPath`, "error: nixoci.buildImage|fromImageName|strings or null"},
		{"passthru not a set", `(dt.buildImage { name = "x"; passthru = 1; }).drvPath`, "error: nixoci.buildImage|passthru|attribute set"},
		{"mtime not a string", `(dt.buildImage { name = "x"; mtime = 1; }).drvPath`, "error: nixoci.buildImage|mtime"},
		{"extraCommands without coreutils", `(bareDt.buildImage { name = "x"; extraCommands = "true"; }).drvPath`, "error: nixoci.buildImage|extraCommands|`coreutils`"},
		{"fakeRootCommands without fakeroot", `((import @NIXDIR@ { nixoci = bb; runtimeShell = "/bin/sh"; coreutils = "/usr"; }).buildImage { name = "x"; fakeRootCommands = "true"; }).drvPath`, "error: nixoci.buildImage|fakeRootCommands|`fakeroot`"},
		{"enableFakechroot without proot", `((import @NIXDIR@ { nixoci = bb; runtimeShell = "/bin/sh"; coreutils = "/usr"; fakeroot = "/usr"; }).buildImage { name = "x"; fakeRootCommands = "true"; enableFakechroot = true; }).drvPath`, "error: nixoci.buildImage|enableFakechroot|`proot`"},
		{"fakeNss without pkgs", `dt.fakeNss.outPath`, "error: nixoci.fakeNss|dockerTools.fakeNss|`pkgs`"},
	}
	nixDir := filepath.Join(testenv.ModuleRoot(), "nix")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eval(t, strings.ReplaceAll(tc.expr, "@NIXDIR@", nixDir))
			if !strings.HasPrefix(tc.want, "error: ") {
				if got != tc.want {
					t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
				}
				return
			}
			if !strings.HasPrefix(got, "error: ") {
				t.Fatalf("%s = %s, want an error", tc.expr, got)
			}
			for _, w := range strings.Split(strings.TrimPrefix(tc.want, "error: "), "|") {
				if !strings.Contains(got, w) {
					t.Errorf("error of %s does not mention %q:\n%s", tc.expr, w, got)
				}
			}
		})
	}
}

// buildPathOf returns the store path of a stand-in binding of the test
// file (it builds it).
func (e *dtEnv) buildPathOf(t *testing.T, name string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "standin.nix")
	src := testenv.ReadFile(t, e.file)
	body := strings.Replace(string(src), "\nin\n{\n", "\nin\n{\n  __standin = "+name+";\n", 1)
	testenv.WriteFile(t, file, body, 0o644)
	return e.build(t, file, "__standin")
}

// ownerNames returns "uname:gname" of every entry of every layer of the
// OCI layout's image.
func ownerNames(t *testing.T, layout string) map[string]string {
	t.Helper()
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(layout, "index.json")), &index); err != nil {
		t.Fatal(err)
	}
	blob := func(d string) string { return filepath.Join(layout, "blobs", strings.Replace(d, ":", "/", 1)) }
	var manifest struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(testenv.ReadFile(t, blob(index.Manifests[0].Digest)), &manifest); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range manifest.Layers {
		tarFile := filepath.Join(t.TempDir(), "layer.tar")
		data, err := exec.Command("sh", "-c", "gzip -dc < "+blob(l.Digest)+" > "+tarFile).CombinedOutput()
		if err != nil {
			t.Fatalf("decompressing %s: %v\n%s", l.Digest, err, data)
		}
		for _, te := range testenv.ReadTar(t, tarFile) {
			out[strings.TrimSuffix(te.Header.Name, "/")] = te.Header.Uname + ":" + te.Header.Gname
		}
	}
	return out
}

// vmParts finds the runAsRoot VM's kernel, its modules and qemu
// (testenv.RequireVM).
func vmParts(t *testing.T) (kernel, modules, qemu string) {
	t.Helper()
	v := testenv.RequireVM(t)
	return v.Kernel, v.Modules, v.Qemu
}
