package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nixoci/nixoci/pkg/commands"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestDeterministic builds the same descriptor twice, in different
// directories and with the store's metadata changed in between: the bytes
// must not change.
func TestDeterministic(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	a := buildImage(t, ctx, s)
	// Metadata the tar must not depend on.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := filepath.Walk(s.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return os.Chtimes(p, old, old)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b := buildImage(t, ctx, s)
	da, _ := os.ReadFile(a.Path)
	db, _ := os.ReadFile(b.Path)
	if !bytes.Equal(da, db) {
		t.Errorf("two builds of the same store paths differ:\n%s\n---\n%s", da, db)
	}
}

// TestInspect checks that inspect names every layer's digest and store path.
func TestInspect(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	img := buildImage(t, ctx, s)
	r := testenv.Must(t, ctx, nixoci(t), "inspect", "nix:"+img.Path)
	for _, l := range img.Image.Layers {
		if !strings.Contains(r.Stdout, l.Digest.String()) || !strings.Contains(r.Stdout, l.DiffID.String()) {
			t.Errorf("inspect output lacks layer %s (diff_id %s):\n%s", l.Digest, l.DiffID, r.Stdout)
		}
	}
	for _, p := range []string{s.Busybox, s.Root, s.Data} {
		if !strings.Contains(r.Stdout, p) {
			t.Errorf("inspect output lacks store path %s:\n%s", p, r.Stdout)
		}
	}
	if !strings.Contains(r.Stdout, hello) {
		t.Errorf("inspect output lacks the config's entrypoint %q:\n%s", hello, r.Stdout)
	}

	r = testenv.Must(t, ctx, nixoci(t), "inspect", "--json", "nix:"+img.Path)
	var out struct {
		Manifest ocispec.Manifest
		Config   ocispec.Image
		Layers   []descriptor.Layer
	}
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.Stdout)
	}
	if len(out.Manifest.Layers) != len(img.Image.Layers) || len(out.Config.RootFS.DiffIDs) != len(img.Image.Layers) {
		t.Fatalf("inspect --json: %d manifest layers and %d diff_ids, want %d", len(out.Manifest.Layers), len(out.Config.RootFS.DiffIDs), len(img.Image.Layers))
	}
	for i, l := range img.Image.Layers {
		if out.Manifest.Layers[i].Digest != l.Digest || out.Config.RootFS.DiffIDs[i] != l.DiffID {
			t.Errorf("inspect --json layer %d = %s / %s, want %s / %s", i, out.Manifest.Layers[i].Digest, out.Config.RootFS.DiffIDs[i], l.Digest, l.DiffID)
		}
	}
	if got := strings.Join(out.Config.Config.Entrypoint, " "); !strings.Contains(got, hello) {
		t.Errorf("inspect --json entrypoint = %q, want it to contain %q", got, hello)
	}
}

// TestVerify checks that verify passes on an intact store and names the
// layer, store path and file after a file changed.
func TestVerify(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	img := buildImage(t, ctx, s)
	testenv.Must(t, ctx, nixoci(t), "verify", "nix:"+img.Path)

	changed := filepath.Join(s.Data, "share", "data.txt")
	if err := os.Chmod(changed, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, changed, "some DATA\n", 0o444)
	failing(t, ctx, []string{s.Data, "share/data.txt"}, "verify", "nix:"+img.Path)
}

// ociBlob reads one blob of an OCI layout.
func ociBlob(t *testing.T, layout string, d fmt.Stringer) []byte {
	t.Helper()
	alg, hex, _ := strings.Cut(d.String(), ":")
	data, err := os.ReadFile(filepath.Join(layout, "blobs", alg, hex))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ociHeaders copies img to an OCI layout and returns every tar header of
// every layer, by name.
func ociHeaders(t *testing.T, ctx context.Context, img builtImage) map[string]*tar.Header {
	t.Helper()
	layout := filepath.Join(t.TempDir(), "layout")
	copyImage(t, ctx, img, "oci:"+layout+":v1")
	var index ocispec.Index
	if err := json.Unmarshal(testenv.ReadFile(t, filepath.Join(layout, "index.json")), &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests", err, len(index.Manifests))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(ociBlob(t, layout, index.Manifests[0].Digest), &m); err != nil {
		t.Fatal(err)
	}
	headers := map[string]*tar.Header{}
	for _, l := range m.Layers {
		var r io.Reader = bytes.NewReader(ociBlob(t, layout, l.Digest))
		switch {
		case strings.HasSuffix(l.MediaType, "+gzip"):
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		case strings.HasSuffix(l.MediaType, "+zstd"):
			zr, err := zstd.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("reading layer %s: %v", l.Digest, err)
			}
			headers[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = h
		}
	}
	return headers
}

// TestLayerFlags exercises --perms, --history, --compression, --ignore,
// --exclude-layers and --tar-directory through the whole chain.
func TestLayerFlags(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	dir := t.TempDir()
	bin := nixoci(t)

	// A base layer with busybox, then a layer of the rest that excludes it.
	base := filepath.Join(dir, "base.json")
	testenv.Must(t, ctx, bin, "layers", "-o", base, "--compression", "zstd", s.Busybox)
	perms := writeJSON(t, filepath.Join(dir, "perms.json"), []map[string]any{{
		"path": s.Data, "regex": "^" + s.Data + "/share$", "mode": "0700", "uid": 1000, "gid": 100, "uname": "app", "gname": "users",
	}})
	history := writeJSON(t, filepath.Join(dir, "history.json"), map[string]string{"created_by": "e2e", "author": "nixoci tests", "comment": "the rest"})
	rest := filepath.Join(dir, "rest.json")
	testenv.Must(t, ctx, bin, "layers", "-o", rest, "--exclude-layers", base, "--perms", perms, "--history", history,
		"--compression", "none", "--copy-to-root", s.Root, s.Busybox, s.Root, s.Data)
	ls, err := descriptor.LoadLayers(rest)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Layers {
		if l.Compressor.Algorithm != "none" || l.Digest != l.DiffID {
			t.Errorf("--compression none: layer %s has compressor %q, diff_id %s", l.Digest, l.Compressor.Algorithm, l.DiffID)
		}
		if l.History == nil || l.History.CreatedBy != "e2e" || l.History.Comment != "the rest" {
			t.Errorf("--history: layer %s history = %+v", l.Digest, l.History)
		}
		for _, p := range l.Paths {
			if p.Path == s.Busybox {
				t.Errorf("--exclude-layers: %s is in the excluded layers but also in %s", s.Busybox, rest)
			}
		}
	}

	config := writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{"Entrypoint": []string{"/bin/busybox", "echo", hello}})
	imgPath := filepath.Join(dir, "image.json")
	testenv.Must(t, ctx, bin, "image", "-o", imgPath, "--name", "Flags", "--config", config, base, rest)
	d, err := descriptor.LoadImage(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "flags" {
		t.Errorf("image name = %q, want it lower-cased to %q", d.Name, "flags")
	}
	headers := ociHeaders(t, ctx, builtImage{Path: imgPath, Image: d})
	share := strings.TrimPrefix(s.Data, "/") + "/share"
	h, ok := headers[share]
	if !ok {
		t.Fatalf("no %s in the layers; have %v", share, keys(headers))
	}
	if h.Mode&0o7777 != 0o700 || h.Uid != 1000 || h.Gid != 100 || h.Uname != "app" || h.Gname != "users" {
		t.Errorf("--perms: %s has mode %o uid %d gid %d %s:%s, want 0700 1000 100 app:users", share, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname)
	}
	if h, ok := headers[strings.TrimPrefix(s.Busybox, "/")+"/bin/busybox"]; !ok || h.Mode&0o777 != 0o555 || h.Uid != 0 {
		t.Errorf("busybox in the base layer: %+v, want mode 0555 owned by root", h)
	}
	if _, ok := headers["etc/motd"]; !ok {
		t.Errorf("--copy-to-root: no etc/motd in the layers; have %v", keys(headers))
	}

	// --tar-directory writes each layer's own tar and describes the layer by it.
	tars := filepath.Join(dir, "tars")
	if err := os.Mkdir(tars, 0o755); err != nil {
		t.Fatal(err)
	}
	tarred := filepath.Join(dir, "tarred.json")
	testenv.Must(t, ctx, bin, "layers", "-o", tarred, "--max-layers", "2", "--tar-directory", tars, s.Busybox, s.Data)
	tl, err := descriptor.LoadLayers(tarred)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Layers) != 2 {
		t.Fatalf("--max-layers 2 --tar-directory: %d layers, want 2", len(tl.Layers))
	}
	for i, l := range tl.Layers {
		if l.Tar == "" || len(l.Paths) != 0 {
			t.Fatalf("--tar-directory: layer %d has tar %q and %d paths, want a tar only", i, l.Tar, len(l.Paths))
		}
		// Each tar holds one store path's files only, not both.
		var names []string
		hasBB, hasData := false, false
		for _, e := range testenv.ReadTar(t, l.Tar) {
			n := e.Header.Name
			names = append(names, n)
			hasBB = hasBB || strings.Contains(n, filepath.Base(s.Busybox))
			hasData = hasData || strings.Contains(n, filepath.Base(s.Data))
		}
		if hasBB == hasData {
			t.Errorf("--tar-directory: layer %d tar %s holds busybox %v and data %v, want exactly one:\n%v", i, l.Tar, hasBB, hasData, names)
		}
	}
	// Regression: --exclude-layers leaves out the store paths of layers
	// described by a tar too (they keep their path list); it used to
	// repeat them.
	above := filepath.Join(dir, "above.json")
	testenv.Must(t, ctx, bin, "layers", "-o", above, "--exclude-layers", tarred, "--copy-to-root", s.Root, s.Busybox, s.Data, s.Root)
	al, err := descriptor.LoadLayers(above)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range al.Layers {
		for _, p := range l.Paths {
			if p.Rewrite == nil && (p.Path == s.Busybox || p.Path == s.Data) {
				t.Errorf("--exclude-layers of tar layers: %s is in %s again, though the tar layers hold it", p.Path, above)
			}
		}
	}

	// Layers described by a tar no longer need the store paths.
	for _, p := range []string{s.Busybox, s.Data} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	timg := filepath.Join(dir, "timage.json")
	testenv.Must(t, ctx, bin, "image", "-o", timg, "--name", "tarred", tarred)
	testenv.Must(t, ctx, bin, "verify", "nix:"+timg)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestNix2ContainerInput feeds a nix2container image.json (its version 1)
// to inspect, verify-free copy and image --from-image: its digests are
// recomputed and must equal what nixoci computes for the same store path.
func TestNix2ContainerInput(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	dir := t.TempDir()
	bin := nixoci(t)
	own := filepath.Join(dir, "own.json")
	testenv.Must(t, ctx, bin, "layers", "-o", own, "--compression", "none", s.Data)
	ownLayers, err := descriptor.LoadLayers(own)
	if err != nil {
		t.Fatal(err)
	}
	bogus := "sha256:" + strings.Repeat("0", 64)
	n2c := writeJSON(t, filepath.Join(dir, "n2c.json"), map[string]any{
		"version":      1,
		"image-config": map[string]any{"Entrypoint": []string{"/bin/busybox", "echo", hello}},
		"arch":         "amd64",
		"layers": []map[string]any{{
			"digest": bogus, "size": 1, "diff_ids": bogus,
			"paths":     []map[string]any{{"path": s.Data}},
			"mediatype": "application/vnd.oci.image.layer.v1.tar",
		}},
	})

	r := testenv.Must(t, ctx, bin, "inspect", "--json", "nix:"+n2c)
	var out struct{ Layers []descriptor.Layer }
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.Stdout)
	}
	if len(out.Layers) != 1 || out.Layers[0].DiffID != ownLayers.Layers[0].DiffID {
		t.Fatalf("inspect of the nix2container image gives layers %+v, want diff_id %s", out.Layers, ownLayers.Layers[0].DiffID)
	}

	// As a base image: its layer comes first, with recomputed digests.
	img := filepath.Join(dir, "image.json")
	testenv.Must(t, ctx, bin, "image", "-o", img, "--name", "on-n2c", "--from-image", n2c, own)
	d, err := descriptor.LoadImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Layers) != 2 || d.Layers[0].DiffID != ownLayers.Layers[0].DiffID {
		t.Errorf("image on a nix2container base: layers %+v, want the base's diff_id %s first", d.Layers, ownLayers.Layers[0].DiffID)
	}
	testenv.Must(t, ctx, bin, "copy", "nix:"+n2c, "oci:"+filepath.Join(dir, "layout")+":v1")
}

// TestHelp checks that every subcommand of issue 2 is listed and has help.
func TestHelp(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	r := testenv.Must(t, ctx, nixoci(t), "--help")
	// Every visible subcommand of the CLI (pkg/commands' TestHelp checks
	// each in process; this checks the built binary).
	var names []string
	for _, c := range commands.New().Commands {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	for _, c := range names {
		if !strings.Contains(r.Stdout, "   "+c+" ") {
			t.Errorf("nixoci --help does not list %s:\n%s", c, r.Stdout)
		}
		h := testenv.Must(t, ctx, nixoci(t), c, "--help")
		if !strings.Contains(h.Stdout, "nixoci "+c) || !strings.Contains(h.Stdout, "Example") {
			t.Errorf("nixoci %s --help lacks usage or an example:\n%s", c, h.Stdout)
		}
	}
}
