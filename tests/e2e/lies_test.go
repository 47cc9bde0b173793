package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// editImage writes a copy of the image descriptor at path, changed by
// edit, into a fresh temporary directory and returns its path.
func editImage(t *testing.T, path string, edit func(*descriptor.Image)) string {
	t.Helper()
	img, err := descriptor.LoadImage(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(img)
	out := filepath.Join(t.TempDir(), "image.json")
	writeJSON(t, out, img)
	return out
}

// layerWith returns the index of the layer of img holding store path p.
func layerWith(t *testing.T, img *descriptor.Image, p string) int {
	t.Helper()
	for i, l := range img.Layers {
		for _, lp := range l.Paths {
			if lp.Path == p && lp.Rewrite == nil {
				return i
			}
		}
	}
	t.Fatalf("no layer holds %s", p)
	return -1
}

// destination is a kind of copy destination for the lie tests: where to
// copy to, and how to tell that nothing was left there.
type destination struct {
	name    string
	require func(t *testing.T)
	// dest returns the destination reference and a check that nothing
	// was written or tagged there.
	dest func(t *testing.T, ctx context.Context) (string, func(t *testing.T))
	// flags are more `nixoci copy` flags.
	flags []string
}

func registryDestination() destination {
	return destination{
		name:    "registry",
		require: func(*testing.T) {},
		dest: func(t *testing.T, ctx context.Context) (string, func(t *testing.T)) {
			proxy, host := testenv.StartFaultRegistry(t)
			return "docker://" + host + "/" + uniqueName(t) + ":v1", func(t *testing.T) {
				if n := proxy.ManifestPuts(); n != 0 {
					t.Errorf("the failed copy pushed %d manifests", n)
				}
			}
		},
		flags: []string{"--dest-tls-verify=false", "--retry-times", "0"},
	}
}

func layoutDestination() destination {
	return destination{
		name:    "oci layout",
		require: func(*testing.T) {},
		dest: func(t *testing.T, ctx context.Context) (string, func(t *testing.T)) {
			parent := t.TempDir()
			return "oci:" + filepath.Join(parent, "layout") + ":v1", func(t *testing.T) {
				if left := listDir(t, parent); len(left) != 0 {
					t.Errorf("the failed copy left %v where the layout was to be", left)
				}
			}
		},
	}
}

func daemonDestination() destination {
	return destination{
		name:    "docker daemon",
		require: func(t *testing.T) { testenv.RequireDocker(t) },
		dest: func(t *testing.T, ctx context.Context) (string, func(t *testing.T)) {
			name := uniqueName(t) + ":v1"
			t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "docker", "rmi", "-f", name) })
			return "docker-daemon:" + name, func(t *testing.T) {
				if r := testenv.Run(ctx, "docker", "image", "inspect", name); r.Err == nil {
					t.Errorf("after the failed copy, docker has the image %s", name)
				}
			}
		},
	}
}

func archiveDestination() destination {
	return destination{
		name:    "docker archive",
		require: func(*testing.T) {},
		dest: func(t *testing.T, ctx context.Context) (string, func(t *testing.T)) {
			parent := t.TempDir()
			return "docker-archive:" + filepath.Join(parent, "image.tar") + ":nixoci-e2e/lie:v1", func(t *testing.T) {
				if left := listDir(t, parent); len(left) != 0 {
					t.Errorf("the failed copy left %v where the archive was to be", left)
				}
			}
		},
	}
}

func storageDestination() destination {
	return destination{
		name: "containers-storage",
		require: func(t *testing.T) {
			testenv.RequireRoot(t, "the containers-storage destination")
			testenv.RequireTools(t, "podman")
		},
		dest: func(t *testing.T, ctx context.Context) (string, func(t *testing.T)) {
			name := "localhost/" + uniqueName(t) + ":v1"
			t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "podman", "rmi", "-f", name) })
			return "containers-storage:" + name, func(t *testing.T) {
				if r := testenv.Run(ctx, "podman", "image", "exists", name); r.Err == nil {
					t.Errorf("after the failed copy, podman has the image %s", name)
				}
			}
		},
	}
}

// copyRefused copies image to d and checks that the copy failed, that its
// error says each of want, and that nothing was left at the destination.
// It returns how long the copy took.
func copyRefused(t *testing.T, ctx context.Context, image string, d destination, want ...string) time.Duration {
	t.Helper()
	d.require(t)
	dest, nothingLeft := d.dest(t, ctx)
	args := append(append([]string{"copy"}, d.flags...), "nix:"+image, dest)
	start := time.Now()
	r := testenv.Cmd{Name: nixoci(t), Args: args, Timeout: 3 * time.Minute}.Run(ctx)
	took := time.Since(start)
	if r.Err == nil {
		t.Fatalf("copying the lying descriptor %s to %s succeeded:\n%s", image, dest, r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("the error does not say %q:\n%s", w, r.Stderr)
		}
	}
	if strings.Contains(r.Stderr, "Digest did not match") {
		t.Errorf("the error is containers/image's generic digest mismatch, not ours:\n%s", r.Stderr)
	}
	nothingLeft(t)
	return took
}

// TestWrongDiffID changes a store path layer's diff_id in the descriptor,
// leaving its digest right. Served compressed or as a plain tar, the layer
// is streamed and hashed, so the copy fails naming the layer and its
// diff_id; no manifest is pushed and nothing is tagged. (Before the layer
// redesign the lie was pushed with exit 0, and `docker pull` failed.)
func TestWrongDiffID(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	s := newStore(t)
	built := buildImage(t, ctx, s)
	i := layerWith(t, built.Image, s.Data)
	lie := digest.FromString("not this layer's tar")
	image := editImage(t, built.Path, func(img *descriptor.Image) { img.Layers[i].DiffID = lie })
	for _, d := range []destination{registryDestination(), layoutDestination(), daemonDestination(), storageDestination()} {
		t.Run(d.name, func(t *testing.T) {
			copyRefused(t, ctx, image, d, built.Image.Layers[i].Digest.String(), "diff_id", lie.String())
		})
	}
}

// TestBadMediaType gives a layer the media type text/html: the descriptor
// is refused when it is read, before any destination is touched: the
// registry sees no request at all. (Before the redesign it went into the
// manifest.) A negative size is refused the same way.
func TestBadMediaType(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	built := buildImage(t, ctx, newStore(t))
	image := editImage(t, built.Path, func(img *descriptor.Image) { img.Layers[0].MediaType = "text/html" })
	t.Run("registry", func(t *testing.T) {
		proxy, host := testenv.StartFaultRegistry(t)
		dest := "docker://" + host + "/" + uniqueName(t) + ":v1"
		r := testenv.Run(ctx, nixoci(t), "copy", "--dest-tls-verify=false", "nix:"+image, dest)
		if r.Err == nil {
			t.Fatalf("copying a text/html layer succeeded:\n%s", r)
		}
		for _, w := range []string{image, "text/html", "layer 0"} {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("the error does not say %q:\n%s", w, r.Stderr)
			}
		}
		if reqs := proxy.Requests(); len(reqs) != 0 {
			t.Errorf("the refused copy sent %d requests to the registry, the first %v", len(reqs), reqs[0])
		}
	})
	t.Run("oci layout", func(t *testing.T) {
		copyRefused(t, ctx, image, layoutDestination(), image, "text/html")
	})
	t.Run("inspect", func(t *testing.T) {
		if r := testenv.Run(ctx, nixoci(t), "inspect", "nix:"+image); r.Err == nil || !strings.Contains(r.Stderr, "text/html") {
			t.Errorf("nixoci inspect of a text/html layer = %v, want an error naming the media type:\n%s", r.Err, r.Stderr)
		}
	})
	t.Run("negative size", func(t *testing.T) {
		negative := editImage(t, built.Path, func(img *descriptor.Image) { img.Layers[0].Size = -1 })
		copyRefused(t, ctx, negative, layoutDestination(), negative, "layer 0", "negative size")
	})
}

// deepStore makes n store paths of one small file each.
func deepStore(t *testing.T, n int) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nix", "store")
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%032d-deep-%d", i, i))
		testenv.WriteFile(t, filepath.Join(paths[i], "share", fmt.Sprintf("f%d", i)), fmt.Sprintf("%d\n", i), 0o444)
	}
	return paths
}

// TestTooManyLayers copies a 1000-layer image where the destination has a
// known limit: the Docker daemon and docker-archive: (125, dockerd's "max
// depth exceeded"), containers-storage with overlay (500). Each copy is
// refused at once, naming the image, its layer count and the limit, and
// nothing is written. (Before, all 1000 layers were streamed into dockerd
// before it failed.) The daemon does load an image of 125 layers: the
// limit is not one too low.
func TestTooManyLayers(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	paths := deepStore(t, 1000)
	image, r := buildFromPaths(t, ctx, []string{"--max-layers", "1000"}, paths...)
	if image == "" {
		t.Fatalf("nixoci layers:\n%s", r)
	}
	for _, tc := range []struct {
		d     destination
		limit int
	}{
		{daemonDestination(), 125},
		{archiveDestination(), 125},
		{storageDestination(), 500},
	} {
		t.Run(tc.d.name, func(t *testing.T) {
			took := copyRefused(t, ctx, image, tc.d, image, "1000 layers", fmt.Sprintf("at most %d", tc.limit), "maxLayers")
			t.Logf("refused after %v", took)
			if took > 30*time.Second {
				t.Errorf("refusing took %v: the layers were streamed first", took)
			}
		})
	}
	t.Run("125 layers into docker", func(t *testing.T) {
		testenv.RequireDocker(t)
		image, r := buildFromPaths(t, ctx, []string{"--max-layers", "125"}, paths[:125]...)
		if image == "" {
			t.Fatalf("nixoci layers:\n%s", r)
		}
		name := uniqueName(t) + ":v1"
		t.Cleanup(func() { testenv.Run(testContext(t, time.Minute), "docker", "rmi", "-f", name) })
		testenv.Cmd{Name: nixoci(t), Args: []string{"copy", "nix:" + image, "docker-daemon:" + name}, Timeout: 5 * time.Minute}.Must(t, ctx)
		got := strings.TrimSpace(testenv.Must(t, ctx, "docker", "image", "inspect", "--format", "{{len .RootFS.Layers}}", name).Stdout)
		if got != "125" {
			t.Errorf("docker has %s layers of %s, want 125", got, name)
		}
	})
}

// TestTarDirectoryReuse writes the tars of two layers documents into one
// --tar-directory: the second run replaces nothing of the first, whose
// image still verifies. (Before, both wrote layer-0.tar, and the first
// image failed `nixoci verify`.) A file nixoci did not write under a
// tar's name fails the run, and is left as it was.
func TestTarDirectoryReuse(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	tars := t.TempDir()
	dir := t.TempDir()
	bin := nixoci(t)
	var images []string
	for i, p := range []string{s.Busybox, s.Data, s.Busybox} {
		layers := filepath.Join(dir, fmt.Sprintf("layers-%d.json", i))
		testenv.Must(t, ctx, bin, "layers", "-o", layers, "--tar-directory", tars, p)
		image := filepath.Join(dir, fmt.Sprintf("image-%d.json", i))
		testenv.Must(t, ctx, bin, "image", "-o", image, "--name", "nixoci-e2e", layers)
		images = append(images, image)
	}
	for _, image := range images {
		if r := testenv.Run(ctx, bin, "verify", "nix:"+image); r.Err != nil {
			t.Errorf("after all three runs, nixoci verify %s failed:\n%s", image, r)
		}
	}
	var names []string
	for _, image := range images[:2] {
		img, err := descriptor.LoadImage(image)
		if err != nil {
			t.Fatal(err)
		}
		l := img.Layers[0]
		if want := filepath.Join(tars, l.DiffID.Encoded()+".tar"); l.Tar != want {
			t.Errorf("%s: tar %s, want %s (named by its diff_id)", image, l.Tar, want)
		}
		names = append(names, filepath.Base(l.Tar))
	}
	want := slices.Sorted(slices.Values(names))
	if got := listDir(t, tars); !slices.Equal(got, want) {
		t.Errorf("tar directory holds %v, want %v", got, want)
	}

	// Another file under the name of the data layer's tar.
	foreign := filepath.Join(tars, names[1])
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, foreign, "not a tar\n", 0o644)
	r := testenv.Run(ctx, bin, "layers", "-o", filepath.Join(dir, "again.json"), "--tar-directory", tars, s.Data)
	if r.Err == nil || !strings.Contains(r.Stderr, foreign) {
		t.Errorf("nixoci layers over a foreign %s = %v, want an error naming it:\n%s", foreign, r.Err, r.Stderr)
	}
	if got := string(testenv.ReadFile(t, foreign)); got != "not a tar\n" {
		t.Errorf("the refused run changed %s (now %d bytes)", foreign, len(got))
	}
	if _, err := os.Stat(filepath.Join(dir, "again.json")); err == nil {
		t.Errorf("the refused run wrote its layers document")
	}
}

// TestCopyToRootShadowing relocates a store path that holds
// nix/store/<data>/share/data.txt to the root, while the data store path
// is in the image too: in another layer of the same build, or in a layer
// below. Other content fails `nixoci layers` naming the copy-to-root path,
// the data path and the file; the same content is accepted. (Before, the
// relocated file silently replaced the store path's in the image.)
func TestCopyToRootShadowing(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	dataFile := filepath.Join(s.Data, "share", "data.txt")
	inImage := strings.TrimPrefix(dataFile, "/")
	evil := filepath.Join(s.Dir, "3d0y8g5kene6n4g9r5y4qyz6wm7p39dd-evil-root")
	testenv.WriteFile(t, filepath.Join(evil, inImage), "other data\n", 0o444)
	testenv.WriteFile(t, filepath.Join(evil, "etc", "motd"), "hello\n", 0o444)
	same := filepath.Join(s.Dir, "4e1z9h6lfof7o5h0s6z5rz07xn8q40ee-same-root")
	testenv.CopyFile(t, dataFile, filepath.Join(same, inImage), 0o444)

	below := filepath.Join(t.TempDir(), "below.json")
	testenv.Must(t, ctx, nixoci(t), "layers", "-o", below, s.Data)
	for _, tc := range []struct {
		name  string
		root  string
		extra []string
		paths []string
		ok    bool
	}{
		{"same build", evil, []string{"--max-layers", "2"}, []string{evil, s.Data}, false},
		{"layer below", evil, []string{"--exclude-layers", below}, []string{evil}, false},
		{"same content", same, []string{"--max-layers", "2"}, []string{same, s.Data}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := append([]string{"--copy-to-root", tc.root}, tc.extra...)
			image, r := buildFromPaths(t, ctx, extra, tc.paths...)
			if tc.ok {
				if image == "" {
					t.Fatalf("nixoci layers refused a copy-to-root file equal to the store path's:\n%s", r)
				}
				return
			}
			if image != "" {
				t.Fatalf("nixoci layers accepted %s hiding %s", tc.root, dataFile)
			}
			for _, w := range []string{tc.root, s.Data, dataFile} {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("the error does not name %s:\n%s", w, r.Stderr)
				}
			}
		})
	}
}

// TestBlobLayerWrongDiffID describes a stored blob (as `nixoci pull`
// writes them) with a wrong diff_id and the right digest. `nixoci verify`
// and every destination served the plain tar (docker-archive here)
// decompress it and refuse it, naming the layer (the copy also names the
// blob file). Destinations given
// the blob as it is (registries, oci:) get it checked against its digest
// only: see the README's Reliability section for why.
func TestBlobLayerWrongDiffID(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	body := []byte("base layer\n")
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/base", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	var blob bytes.Buffer
	zw := gzip.NewWriter(&blob)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	dir := t.TempDir()
	blobFile := filepath.Join(dir, "blob")
	testenv.WriteFile(t, blobFile, blob.String(), 0o444)
	image := filepath.Join(dir, "image.json")
	writeJSON(t, image, &descriptor.Image{
		Nixoci: descriptor.Version, Architecture: "amd64", OS: "linux",
		Layers: []descriptor.Layer{{
			MediaType: descriptor.MediaType(descriptor.Gzip),
			Digest:    digest.FromBytes(blob.Bytes()), Size: int64(blob.Len()),
			DiffID: digest.FromString("not this tar"), UncompressedSize: int64(tarBuf.Len()),
			Compressor: descriptor.Compressor{Algorithm: descriptor.Gzip},
			Blob:       blobFile,
		}},
	})
	if r := testenv.Run(ctx, nixoci(t), "verify", "nix:"+image); r.Err == nil || !strings.Contains(r.Stderr, "layer 0") || !strings.Contains(r.Stderr, "diff_id") {
		t.Errorf("nixoci verify of a blob with a wrong diff_id = %v, want an error naming layer 0 and its diff_id:\n%s", r.Err, r)
	}
	copyRefused(t, ctx, image, archiveDestination(), blobFile, "diff_id")
}
