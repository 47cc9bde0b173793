package nix

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/nixoci/nixoci/tests/testenv"
)

// archivePrefix names every Docker image these tests make.
const archivePrefix = "nixoci-test-archive/"

// dockerImages are the images made with Docker itself, saved with
// `docker save` and added to the store.
type dockerImages struct {
	// plain and gz hold app:v2 alone (a docker save tar, and it gzipped);
	// both holds base:v1 and app:v2.
	plain, gz, both string
	// dir is a containers/image dir: layout of base:v1, in the store.
	dir string
}

// mkDockerImages builds base:v1 (busybox, /etc/marker, /etc/deleteme,
// /opq/old) with `docker import`, and app:v2 on it with `docker commit`
// after deleting /etc/deleteme and recreating /opq (a whiteout and an
// opaque directory in its second layer), then saves them.
func mkDockerImages(t *testing.T, e *nixEnv, dir string) dockerImages {
	t.Helper()
	base, app := archivePrefix+"base:v1", archivePrefix+"app:v2"
	rootfs := filepath.Join(dir, "rootfs.tar")
	writeRootfs(t, rootfs)
	t.Cleanup(func() { e.Run(time.Minute, "docker", "rmi", "-f", base, app) })
	e.Must(t, time.Minute, "docker", "import", "--change", `CMD ["/bin/sh"]`, rootfs, base)
	container := "nixoci-test-archive-commit"
	e.Run(time.Minute, "docker", "rm", "-f", container)
	e.Must(t, time.Minute, "docker", "run", "--network", "none", "--name", container, base,
		"/bin/sh", "-c", "rm /etc/deleteme && rm -r /opq && mkdir /opq && echo new > /opq/new && echo second > /etc/second")
	e.Must(t, time.Minute, "docker", "commit", "--change", `CMD ["/bin/sh"]`, container, app)
	e.Must(t, time.Minute, "docker", "rm", container)

	files := filepath.Join(dir, "saved")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	plain, gz, both := filepath.Join(files, "app.tar"), filepath.Join(files, "app.tar.gz"), filepath.Join(files, "both.tar")
	e.Must(t, time.Minute, "docker", "save", "-o", plain, app)
	e.Must(t, time.Minute, "docker", "save", "-o", both, base, app)
	gzipFile(t, plain, gz)
	// A pulled layout, as nix2container's pullImage fetches: through a
	// registry, so the blobs are compressed as their media types say.
	layout := filepath.Join(dir, "base-layout")
	reg := startRegistry(t)
	nixoci := filepath.Join(e.nixoci, "bin", "nixoci")
	e.Must(t, 2*time.Minute, nixoci, "copy", "--dest-tls-verify=false", "docker-daemon:"+base, "docker://"+reg.Addr+"/base:v1")
	e.Must(t, 2*time.Minute, nixoci, "copy", "--src-tls-verify=false", "docker://"+reg.Addr+"/base:v1", "dir:"+layout)
	add := func(p string) string { return strings.TrimSpace(e.Must(t, time.Minute, "nix-store", "--add", p)) }
	return dockerImages{plain: add(plain), gz: add(gz), both: add(both), dir: add(layout)}
}

// writeRootfs writes a tar of a small busybox file system.
func writeRootfs(t *testing.T, file string) {
	t.Helper()
	busybox := testenv.ReadFile(t, testenv.StaticBusybox(t))
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(h *tar.Header, body string) {
		h.ModTime = time.Unix(1, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	for _, d := range []string{"bin/", "etc/", "opq/", "tmp/"} {
		add(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}, "")
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(busybox))}, string(busybox))
	for _, a := range []string{"sh", "cat", "ls", "test", "echo", "rm", "mkdir", "stat"} {
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, "")
	}
	for name, body := range map[string]string{"etc/marker": "docker base\n", "etc/deleteme": "delete me\n", "opq/old": "old\n"} {
		add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(testenv.ReadFile(t, src))
	zw.Close()
	if err := os.WriteFile(dst, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// n2cPullJSON is nix2container's pullImage output for a dir: layout: its
// image.json, version 1, layers pointing at the layout's blobs, the config
// not read (image-config empty), no sizes, no arch.
func n2cPullJSON(t *testing.T, layout string) string {
	t.Helper()
	var m struct {
		Config struct{ Digest string }
		Layers []struct {
			MediaType string
			Digest    string
		}
	}
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(layout, "manifest.json")), &m); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(layout, strings.TrimPrefix(m.Config.Digest, "sha256:"))), &cfg); err != nil {
		t.Fatal(err)
	}
	type layer struct {
		Digest    string         `json:"digest"`
		Size      int64          `json:"size"`
		DiffIDs   string         `json:"diff_ids"`
		MediaType string         `json:"mediatype"`
		LayerPath string         `json:"layer-path"`
		History   map[string]any `json:"History"`
	}
	var layers []layer
	for i, l := range m.Layers {
		mt := l.MediaType
		switch mt {
		case "application/vnd.docker.image.rootfs.diff.tar":
			mt = "application/vnd.oci.image.layer.v1.tar"
		case "application/vnd.docker.image.rootfs.diff.tar.gzip":
			mt = "application/vnd.oci.image.layer.v1.tar+gzip"
		}
		layers = append(layers, layer{Digest: l.Digest, DiffIDs: cfg.RootFS.DiffIDs[i], MediaType: mt, LayerPath: layout + "/" + strings.TrimPrefix(l.Digest, "sha256:"), History: map[string]any{}})
	}
	data, err := json.MarshalIndent(map[string]any{"version": 1, "image-config": map[string]any{}, "layers": layers, "arch": "", "created": nil}, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

const archiveArgs = `plainTar, gzTar, bothTar, n2cDir, n2cPull`

const archiveLets = `
  plain = builtins.storePath plainTar;
  gz = builtins.storePath gzTar;
  both = builtins.storePath bothTar;
  derivedRoot = mk "derived-root" "mkdir -p $out/etc; echo derived > $out/etc/derived";
  checkBase = [ "/bin/sh" "-c" "cat /etc/marker /etc/second /opq/new /etc/derived; test -e /etc/deleteme || echo deleted" ];
  # A stand-in of nix2container's buildImage result: its image.json, with
  # digests of its own tar writer (here made up), and a root relocated to /.
  n2cImage = mk "image-n2c.json" ''
    cat > $out <<EOF
    {
      "version": 1,
      "image-config": { "Env": [ "FROM=n2c" ], "Cmd": [ "/bin/sh" ] },
      "layers": [
        {
          "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
          "size": 1234,
          "diff_ids": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
          "paths": [
            { "path": "${bb}" },
            { "path": "${root}", "options": { "rewrite": { "regex": "^${root}", "repl": "" } } }
          ],
          "mediatype": "application/vnd.oci.image.layer.v1.tar+gzip",
          "History": { "created_by": "nix2container" }
        }
      ],
      "arch": "amd64",
      "created": "0001-01-01T00:00:00Z"
    }
    EOF
  '' // { imageName = "n2c"; imageTag = "v1"; };
  # A stand-in of nix2container's pullImage result: image.json pointing
  # at the blobs of a dir: layout in the store.
  n2cPulled = builtins.derivation {
    name = "nix2container-base.json";
    system = builtins.currentSystem;
    builder = "${bb}/bin/sh";
    layout = builtins.storePath n2cDir;
    json = n2cPull;
    args = [ "-c" "echo \"$json\" > $out" ];
  };
  fromGz = nixoci.buildImage { name = "nixoci-test-archive/from-gz"; tag = "v1"; fromImage = gz; copyToRoot = derivedRoot; config.Cmd = checkBase; };
  hello = mk "hello-2.12.1" ''
    mkdir -p $out/bin
    printf '#!${bb}/bin/sh\necho "Hello, world!"\n' > $out/bin/hello
    chmod +x $out/bin/hello
  '';

  fromPlain = nixoci.buildImage { name = "nixoci-test-archive/from-plain"; tag = "v1"; fromImage = plain; copyToRoot = derivedRoot; config.Cmd = checkBase; };
  fromN2c = nixoci.buildImage {
    name = "nixoci-test-archive/from-n2c"; tag = "v1"; fromImage = n2cImage; copyToRoot = derivedRoot;
    config.Cmd = [ "/bin/sh" "-c" "echo $FROM; cat /etc/marker /etc/derived" ];
  };
  fromN2cPull = nixoci.buildImage {
    name = "nixoci-test-archive/from-n2c-pull"; tag = "v1"; fromImage = n2cPulled; copyToRoot = derivedRoot;
    config.Cmd = [ "/bin/sh" "-c" "cat /etc/marker /etc/derived" ];
  };
  fromDirectory = nixoci.buildImage { name = "x"; fromImage = root; };
  stream = nixoci.streamLayeredImage {
    name = "nixoci-test-archive/stream";
    tag = "v1";
    contents = [ root ];
    config.Cmd = [ "/bin/sh" "-c" "echo streamed; cat /etc/marker" ];
  };
  streamOnBase = nixoci.streamLayeredImage {
    name = "nixoci-test-archive/stream-on-base";
    tag = "v1";
    fromImage = gz;
    maxLayers = 4;
    contents = [ root derivedRoot ];
    config.Env = builtins.genList (i: "LEAF${toString i}=${mk "leaf-${toString i}" "mkdir $out"}") 6;
    config.Cmd = [ "/bin/sh" "-c" "cat /etc/derived" ];
  };
  exportedApp = nixoci.exportImage { fromImage = both; fromImageName = "nixoci-test-archive/app"; fromImageTag = "v2"; name = "app-rootfs.tar"; };
  exportedBase = nixoci.exportImage { fromImage = both; fromImageName = "nixoci-test-archive/base"; fromImageTag = "v1"; name = "base-rootfs.tar"; };
  exportedNixoci = nixoci.exportImage { fromImage = fromGz; };
  mergedA = nixoci.buildImage { name = "nixoci-test-archive/merged-a"; tag = "v1"; copyToRoot = root; config.Cmd = [ "/bin/sh" "-c" "echo merged a" ]; };
  merged = nixoci.mergeImages [ mergedA stream gz ];
  # The dockerTools manual's buildLayeredImage example, with the function
  # prefix renamed.
  helloImage = nixoci.buildLayeredImage {
    name = "hello";
    tag = "latest";

    contents = [ hello ];

    config.Cmd = [ "/bin/hello" ];
  };
`

const archiveAttrs = `
  inherit fromPlain fromGz fromN2c fromN2cPull fromDirectory stream streamOnBase;
  inherit exportedApp exportedBase exportedNixoci merged helloImage;
`

// TestArchives checks the library's docker-archive functions against real
// Nix and dockerd: fromImage from `docker save` tarballs (plain and
// gzipped) and nix2container results, streamLayeredImage piped into
// `docker load`, exportImage imported with `docker import`, mergeImages,
// and dockerTools' buildLayeredImage example.
func TestArchives(t *testing.T) {
	testenv.RequireNix(t)
	testenv.RequireDocker(t)
	testenv.RequireTools(t, "skopeo")
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	e.addNixoci(t, dir)
	imgs := mkDockerImages(t, e, dir)
	file := e.writeNix(t, dir, "archives.nix", archiveArgs, archiveLets, archiveAttrs)
	args := []string{"--argstr", "plainTar", imgs.plain, "--argstr", "gzTar", imgs.gz, "--argstr", "bothTar", imgs.both,
		"--argstr", "n2cDir", imgs.dir, "--argstr", "n2cPull", n2cPullJSON(t, imgs.dir)}
	nixoci := filepath.Join(e.nixoci, "bin", "nixoci")
	run := func(t *testing.T, ref string, cmd ...string) string {
		t.Helper()
		return e.Must(t, 2*time.Minute, "docker", append([]string{"run", "--rm", "--network", "none", ref}, cmd...)...)
	}
	rmi := func(refs ...string) { e.Run(time.Minute, "docker", append([]string{"rmi", "-f"}, refs...)...) }

	for _, tc := range []struct {
		attr, archive, ref string
	}{{"fromPlain", imgs.plain, archivePrefix + "from-plain:v1"}, {"fromGz", imgs.gz, archivePrefix + "from-gz:v1"}} {
		t.Run(tc.attr, func(t *testing.T) {
			start := time.Now()
			out := e.build(t, file, tc.attr, args...)
			t.Logf("building %s (describing the base from %s) took %s", tc.attr, filepath.Base(tc.archive), time.Since(start).Round(time.Millisecond))
			doc := loadMembers(t, out)
			if len(doc.Layers) != 3 {
				t.Fatalf("%s has %d layers, want 3 (two from the saved image, one of its own)", out, len(doc.Layers))
			}
			for i, l := range doc.Layers[:2] {
				if l.Member == nil || l.Member.Archive != tc.archive || l.Blob != "" || l.Tar != "" {
					t.Errorf("base layer %d of %s is served from %+v (blob %q, tar %q), want a member of %s", i, out, l.Member, l.Blob, l.Tar, tc.archive)
				}
			}
			ref := tc.ref
			t.Cleanup(func() { rmi(ref) })
			e.nixRunArgs(t, file, tc.attr+".copyToDockerDaemon", args)
			if got := run(t, ref); got != "docker base\nsecond\nnew\nderived\ndeleted\n" {
				t.Errorf("docker run %s printed %q, want the saved image's files and the derived one", ref, got)
			}
			// To a registry the base layers are compressed on the fly.
			reg := startRegistry(t)
			e.nixRunArgs(t, file, tc.attr+".copyTo", args, "docker://"+reg.Addr+"/"+ref, "--dest-tls-verify=false")
			if n := len(skopeoLayers(t, e, reg.Addr+"/"+ref)); n != 3 {
				t.Errorf("the registry has %d layers of %s, want 3", n, ref)
			}
			e.Must(t, 2*time.Minute, nixoci, "verify", "nix:"+out)
		})
	}

	t.Run("nix2container", func(t *testing.T) {
		for _, tc := range []struct{ attr, ref, want string }{
			{"fromN2c", archivePrefix + "from-n2c:v1", "n2c\nbase\nderived\n"},
			{"fromN2cPull", archivePrefix + "from-n2c-pull:v1", "docker base\nderived\n"},
		} {
			e.build(t, file, tc.attr, args...)
			t.Cleanup(func() { rmi(tc.ref) })
			e.nixRunArgs(t, file, tc.attr+".copyToDockerDaemon", args)
			if got := run(t, tc.ref); got != tc.want {
				t.Errorf("docker run %s printed %q, want %q", tc.ref, got, tc.want)
			}
		}
	})

	t.Run("fromImage a directory", func(t *testing.T) {
		r := e.Run(5*time.Minute, "nix-build", append([]string{file, "-A", "fromDirectory", "--no-out-link"}, args...)...)
		if r.Err == nil || !strings.Contains(r.Stderr, "fromImage") || !strings.Contains(r.Stderr, "-root is a directory without image.json") {
			t.Errorf("building an image on a directory that is no image: %v, want an error naming fromImage and the path:\n%s", r.Err, testenv.Tail(r.Stderr, 10))
		}
	})

	t.Run("streamLayeredImage", func(t *testing.T) {
		for _, tc := range []struct {
			attr, ref, want string
			layers          int
		}{
			{"stream", archivePrefix + "stream:v1", "streamed\nbase\n", 0},
			// maxLayers counts the base's two layers, as in dockerTools.
			{"streamOnBase", archivePrefix + "stream-on-base:v1", "derived\n", 4},
		} {
			script := e.build(t, file, tc.attr, args...)
			t.Cleanup(func() { rmi(tc.ref) })
			fi, err := os.Stat(script)
			if err != nil || fi.Mode()&0o111 == 0 {
				t.Fatalf("%s is not an executable: %v %v", script, fi, err)
			}
			r := testenv.Cmd{Name: "/bin/sh", Args: []string{"-c", script + " | docker load"}, Timeout: 5 * time.Minute}.Must(t, t.Context())
			if !strings.Contains(r.Stdout, "Loaded image: "+tc.ref) {
				t.Errorf("%s | docker load printed %q, want it to load %s", script, r.Stdout, tc.ref)
			}
			if got := run(t, tc.ref); got != tc.want {
				t.Errorf("docker run %s printed %q, want %q", tc.ref, got, tc.want)
			}
			if tc.layers > 0 {
				n := strings.TrimSpace(e.Must(t, time.Minute, "docker", "image", "inspect", "--format", "{{len .RootFS.Layers}}", tc.ref))
				if n != fmt.Sprint(tc.layers) {
					t.Errorf("%s has %s layers, want maxLayers = %d", tc.ref, n, tc.layers)
				}
			}
		}
	})

	t.Run("exportImage", func(t *testing.T) {
		for _, tc := range []struct {
			attr, want string
		}{
			{"exportedApp", "docker base\nsecond\nnew\ngone\n"},
			{"exportedBase", "docker base\ndelete me\nold\n"},
			{"exportedNixoci", "docker base\nsecond\nderived\nnew\ngone\n"},
		} {
			out := e.build(t, file, tc.attr, args...)
			for _, en := range testenv.ReadTar(t, out) {
				if strings.Contains(en.Header.Name, ".wh.") {
					t.Errorf("%s holds the whiteout %s", out, en.Header.Name)
				}
			}
			ref := archivePrefix + "exported-" + strings.ToLower(tc.attr) + ":v1"
			t.Cleanup(func() { rmi(ref) })
			e.Must(t, time.Minute, "docker", "import", out, ref)
			got := run(t, ref, "/bin/sh", "-c", "cat /etc/marker; cat /etc/second /etc/derived /etc/deleteme 2>/dev/null; ls /opq; test -e /etc/deleteme || echo gone")
			if got != tc.want {
				t.Errorf("docker import %s, then run: printed %q, want %q", out, got, tc.want)
			}
		}
	})

	t.Run("mergeImages", func(t *testing.T) {
		out := e.build(t, file, "merged", args...)
		refs := []string{archivePrefix + "merged-a:v1", archivePrefix + "stream:v1", archivePrefix + "app:v2"}
		rmi(refs...)
		t.Cleanup(func() { rmi(refs[:2]...) })
		loaded := e.Must(t, 5*time.Minute, "docker", "load", "-i", out)
		for _, ref := range refs {
			if !strings.Contains(loaded, "Loaded image: "+ref) {
				t.Errorf("docker load -i %s printed %q, want it to load %s", out, loaded, ref)
			}
		}
		if got := run(t, refs[0]); got != "merged a\n" {
			t.Errorf("docker run %s printed %q", refs[0], got)
		}
		if got := run(t, refs[2], "/bin/sh", "-c", "cat /etc/second"); got != "second\n" {
			t.Errorf("docker run %s printed %q", refs[2], got)
		}
	})

	t.Run("command line", func(t *testing.T) {
		work := t.TempDir()
		img := filepath.Join(work, "base.json")
		// base:v1 out of the archive that also holds app:v2.
		e.Must(t, 2*time.Minute, nixoci, "image", "-o", img, "--name", archivePrefix+"cli-base", "--tag", "v1",
			"--from-image", imgs.both, "--from-image-name", archivePrefix+"base", "--from-image-tag", "v1", "--from-image-compression", "zstd")
		doc := loadMembers(t, img)
		if len(doc.Layers) != 1 || doc.Layers[0].Member == nil || doc.Layers[0].Member.Archive != imgs.both {
			t.Fatalf("%s: %+v, want one layer served from %s", img, doc.Layers, imgs.both)
		}
		if !strings.Contains(string(testenv.ReadFile(t, img)), "tar+zstd") {
			t.Errorf("%s does not describe the layer compressed with zstd", img)
		}
		ref := archivePrefix + "cli-base:v1"
		t.Cleanup(func() { rmi(ref) })
		testenv.Cmd{Name: "/bin/sh", Args: []string{"-c", nixoci + " save nix:" + img + " | docker load"}, Timeout: 5 * time.Minute}.Must(t, t.Context())
		if got := run(t, ref, "/bin/sh", "-c", "cat /etc/deleteme"); got != "delete me\n" {
			t.Errorf("docker run %s printed %q, want base:v1's /etc/deleteme", ref, got)
		}
		flat := filepath.Join(work, "app.tar")
		e.Must(t, 2*time.Minute, nixoci, "export", "-o", flat, "--from-image-name", archivePrefix+"app", "--from-image-tag", "v2", imgs.both)
		names := map[string]bool{}
		for _, en := range testenv.ReadTar(t, flat) {
			names[strings.TrimSuffix(en.Header.Name, "/")] = true
		}
		if !names["etc/second"] || !names["opq/new"] || names["etc/deleteme"] || names["opq/old"] {
			t.Errorf("nixoci export of app:v2 holds %v, want etc/second and opq/new, not etc/deleteme or opq/old", names)
		}
		r := e.Run(time.Minute, nixoci, "export", "-o", filepath.Join(work, "none.tar"), "--from-image-name", "nope", "--from-image-tag", "v1", imgs.both)
		if r.Err == nil || !strings.Contains(r.Stderr, "nope:v1") || !strings.Contains(r.Stderr, archivePrefix+"app:v2") {
			t.Errorf("nixoci export of an image the archive lacks: %v, want an error naming it and the tags there:\n%s", r.Err, r.Stderr)
		}
		if _, err := os.Stat(filepath.Join(work, "none.tar")); err == nil {
			t.Error("a failed nixoci export left its output file")
		}
	})

	t.Run("buildLayeredImage hello", func(t *testing.T) {
		out := e.build(t, file, "helloImage", args...)
		if n := len(loadMembers(t, out).Layers); n < 2 {
			t.Errorf("%s has %d layers, want hello and its closure in layers of their own", out, n)
		}
		tarball := e.build(t, file, "helloImage.tarball", args...)
		if !strings.HasSuffix(tarball, "-hello.tar.gz") {
			t.Errorf("tarball %s, want hello.tar.gz", tarball)
		}
		// The image ID, to run it whatever else is tagged hello:latest.
		id := tarballImageID(t, tarball)
		t.Cleanup(func() { rmi(id) })
		loaded := e.Must(t, 5*time.Minute, "docker", "load", "-i", tarball)
		if !strings.Contains(loaded, "Loaded image: hello:latest") {
			t.Errorf("docker load -i %s printed %q, want hello:latest", tarball, loaded)
		}
		if got := run(t, id); got != "Hello, world!\n" {
			t.Errorf("docker run %s (hello:latest) printed %q", id, got)
		}
		// The same image through the copy script, under a name of the test's own.
		ref := archivePrefix + "hello:latest"
		t.Cleanup(func() { rmi(ref) })
		e.nixRunArgs(t, file, "helloImage.copyTo", args, "docker-daemon:"+ref)
		if got := run(t, ref); got != "Hello, world!\n" {
			t.Errorf("docker run %s printed %q", ref, got)
		}
	})
}

// memberDoc is the part of an image descriptor these tests read.
type memberDoc struct {
	Layers []struct {
		Blob   string `json:"blob"`
		Tar    string `json:"tar"`
		Member *struct {
			Archive string `json:"archive"`
			Name    string `json:"name"`
		} `json:"member"`
	} `json:"layers"`
}

func loadMembers(t *testing.T, file string) memberDoc {
	t.Helper()
	var d memberDoc
	if err := json.Unmarshal(testenv.ReadFile(t, file), &d); err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	return d
}

// tarballImageID returns the image ID of the one image in a gzipped
// docker-archive: the digest of its config.
func tarballImageID(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ Config string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
			t.Fatalf("manifest.json of %s: %v (%d images)", file, err, len(m))
		}
		return "sha256:" + strings.TrimSuffix(m[0].Config, ".json")
	}
	sort.Strings(names)
	t.Fatalf("%s has no manifest.json: %v", file, names)
	return ""
}

// TestArchiveBadInput checks that misuse of the archive functions fails at
// evaluation, naming the function and the argument.
func TestArchiveBadInput(t *testing.T) {
	dir := t.TempDir()
	e := newNixEnv(t, dir)
	for _, tc := range []struct {
		name, expr string
		want       []string
	}{
		{"fromImage a dockerTools stream script", `nixoci.buildImage { name = "x"; fromImage = root // { isExe = true; }; }`,
			[]string{"nixoci.buildImage", "fromImage", "dockerTools.streamLayeredImage", "buildLayeredImage"}},
		{"fromImage a plain string", `nixoci.exportImage { fromImage = "/tmp/image.tar"; name = "x"; }`,
			[]string{"nixoci.exportImage", "fromImage", "docker-archive", "/tmp/image.tar"}},
		{"exportImage of a path without a name", `nixoci.exportImage { fromImage = "${root}"; }`,
			[]string{"nixoci.exportImage", "`name`"}},
		{"mergeImages not a list", `nixoci.mergeImages root`,
			[]string{"nixoci.mergeImages", "a list"}},
		{"mergeImages of something else", `nixoci.mergeImages [ true ]`,
			[]string{"nixoci.mergeImages", "each element of its list", "a bool"}},
		{"layeringPipeline", `nixoci.streamLayeredImage { name = "x"; layeringPipeline = [ ]; }`,
			[]string{"nixoci.streamLayeredImage", "layeringPipeline", "maxLayers"}},
		{"compressor", `(nixoci.buildLayeredImage { name = "x"; compressor = "xz"; }).tarball`,
			[]string{"nixoci.buildLayeredImage", "compressor", `"gz"`, `"xz"`}},
		{"stream script without a shell", `(import ` + fmt.Sprintf("%q", filepath.Join(testenv.ModuleRoot(), "nix")) + ` { nixoci = bb; }).streamLayeredImage { name = "x"; }`,
			[]string{"nixoci.streamLayeredImage", "`runtimeShell`"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := e.writeNix(t, t.TempDir(), "bad.nix", "", "", "drv = "+tc.expr+";")
			r := e.Run(time.Minute, "nix-instantiate", file, "-A", "drv")
			if r.Err == nil {
				t.Fatalf("nix-instantiate of %s succeeded, want an error", tc.expr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("error of %s = %q, want it to contain %q", tc.expr, testenv.Tail(r.Stderr, 10), w)
				}
			}
		})
	}
}
