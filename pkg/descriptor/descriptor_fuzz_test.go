package descriptor_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// descriptorSeeds are documents of both formats and both kinds, good and
// bad, for FuzzLoadDescriptor; testdata/fuzz/FuzzLoadDescriptor holds more.
var descriptorSeeds = []string{
	// A nixoci image: a store path layer, a tar layer and a blob layer.
	`{"nixoci":1,"name":"app","tag":"v1","architecture":"amd64","os":"linux","created":"2024-05-06T07:08:09Z",
	  "config":{"Entrypoint":["/bin/app"],"Env":["PATH=/bin"],"ExposedPorts":{"80/tcp":{}},"Labels":{"a":"1"}},
	  "layers":[
	    {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","size":10,
	     "diffID":"sha256:0000000000000000000000000000000000000000000000000000000000000002","uncompressedSize":20,
	     "compressor":{"algorithm":"gzip","level":5,"library":"github.com/klauspost/compress@v1.18.0"},
	     "paths":[{"path":"/nix/store/aaaa-root","rewrite":{"regex":"^/nix/store/aaaa-root","repl":""},
	               "perms":[{"regex":".*/data","mode":"0700","uid":1000,"gname":"app"}],"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000003","fingerprints":"AAAAAA=="}],
	     "history":{"created_by":"nixoci","comment":"c"}},
	    {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000004","size":3072,
	     "diffID":"sha256:0000000000000000000000000000000000000000000000000000000000000004","uncompressedSize":3072,
	     "compressor":{"algorithm":"none"},"tar":"/nix/store/bbbb-layer/x.tar","storePaths":["/nix/store/cccc-lib"]},
	    {"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000005","size":99,
	     "diffID":"sha256:0000000000000000000000000000000000000000000000000000000000000006","uncompressedSize":512,
	     "compressor":{"algorithm":"gzip"},"blob":"/nix/store/dddd-base/blob"}]}`,
	// A nixoci layers document.
	`{"nixoci":1,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000007","size":1,
	  "diffID":"sha256:0000000000000000000000000000000000000000000000000000000000000008","uncompressedSize":2,"compressor":{"algorithm":"zstd"},
	  "paths":[{"path":"/nix/store/eeee-data","ignore":"^/nix/store/eeee-data/doc"}]}]}`,
	// A nix2container image.json.
	`{"version":1,"image-config":{"Cmd":["/bin/sh"]},"arch":"arm64","created":"2024-01-02T03:04:05Z","layers":[
	  {"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000009","size":3072,"diff_ids":"sha256:0000000000000000000000000000000000000000000000000000000000000009",
	   "mediatype":"application/vnd.oci.image.layer.v1.tar","paths":[{"path":"/nix/store/ffff-root","options":{"rewrite":{"regex":"^/nix/store/ffff-root","repl":""},
	   "perms":[{"regex":".*","mode":"0755","uid":1,"gid":2,"uname":"u","gname":"g"}],"ignoreDestination":"^/doc"}}],"History":{"created_by":"nix2container"}},
	  {"digest":"sha256:000000000000000000000000000000000000000000000000000000000000000a","size":99,"diff_ids":"sha256:000000000000000000000000000000000000000000000000000000000000000b",
	   "mediatype":"application/vnd.oci.image.layer.v1.tar+gzip","layer-path":"/nix/store/gggg-blob"}]}`,
	// Lies and mix-ups the loader must refuse.
	`{"nixoci":1,"architecture":"amd64","os":"linux","config":{},"layers":[{"mediaType":"text/html","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","diffID":"sha256:0000000000000000000000000000000000000000000000000000000000000001","compressor":{"algorithm":"none"},"paths":[{"path":"/nix/store/a"}]}]}`,
	`{"nixoci":1,"architecture":"amd64","os":"linux","config":{},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","size":-1,"diffID":"sha256:0000000000000000000000000000000000000000000000000000000000000001","compressor":{"algorithm":"none"},"tar":"/t"}]}`,
	`{"nixoci":1,"layers":[],"architecture":"amd64"}`,
	`{"nixoci":2,"layers":[]}`,
	`{"version":1,"image-config":{},"layers":[{"digest":"x","mediatype":"application/vnd.oci.image.layer.v1.tar+gzip","layer-path":"/b","paths":[{"path":"/p"}]}]}`,
	`[]`,
	`null`,
}

// FuzzLoadDescriptor feeds documents to both loaders: ParseImage (nixoci
// and nix2container images) and LoadLayers (layers documents). Neither
// panics; no document is both an image and a layers document; what either
// accepts validates and survives Marshal and a second load unchanged, and
// Marshal gives the same bytes for it again.
func FuzzLoadDescriptor(f *testing.F) {
	for _, s := range descriptorSeeds {
		f.Add([]byte(s))
	}
	// One directory per fuzzing process, which runs its inputs one by one.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		img, ierr := descriptor.ParseImage("fuzz.json", data)
		if ierr == nil {
			checkImage(t, img)
		}
		file := filepath.Join(dir, "layers.json")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ls, lerr := descriptor.LoadLayers(file)
		if lerr != nil {
			return
		}
		if ierr == nil {
			t.Fatal("both ParseImage() and LoadLayers() accepted the document")
		}
		checkLayers(t, ls, file)
	})
}

// equal compares loaded documents: an empty list is no list.
var equal = cmpopts.EquateEmpty()

// checkImage checks an image ParseImage accepted: it validates, and
// Marshal and ParseImage give it back unchanged, with stable bytes.
func checkImage(t *testing.T, img *descriptor.Image) {
	t.Helper()
	if err := img.Validate(); err != nil {
		t.Fatalf("ParseImage() accepted an image that does not validate: %v", err)
	}
	if img.Nixoci != descriptor.Version {
		t.Fatalf("ParseImage() gave version %d, want %d", img.Nixoci, descriptor.Version)
	}
	out, err := descriptor.Marshal(img)
	if err != nil {
		t.Fatalf("Marshal(parsed image) = %v", err)
	}
	again, err := descriptor.ParseImage("marshalled.json", out)
	if err != nil {
		t.Fatalf("ParseImage(Marshal(parsed)) = %v\n%s", err, out)
	}
	if !cmp.Equal(img, again, equal) {
		t.Fatalf("ParseImage(Marshal(parsed)) differs (-parsed +again):\n%s", cmp.Diff(img, again, equal))
	}
	if out2, err := descriptor.Marshal(again); err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("Marshal() is not stable (%v):\n%s\n---\n%s", err, out, out2)
	}
}

// checkLayers checks a layers document LoadLayers accepted from file:
// every layer validates, and Marshal and LoadLayers give it back unchanged.
func checkLayers(t *testing.T, ls *descriptor.Layers, file string) {
	t.Helper()
	for i := range ls.Layers {
		if err := ls.Layers[i].Validate(); err != nil {
			t.Fatalf("LoadLayers() accepted layer %d that does not validate: %v", i, err)
		}
	}
	out, err := descriptor.Marshal(ls)
	if err != nil {
		t.Fatalf("Marshal(loaded layers) = %v", err)
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := descriptor.LoadLayers(file)
	if err != nil {
		t.Fatalf("LoadLayers(Marshal(loaded)) = %v\n%s", err, out)
	}
	if !cmp.Equal(ls, again, equal) {
		t.Fatalf("LoadLayers(Marshal(loaded)) differs (-loaded +again):\n%s", cmp.Diff(ls, again, equal))
	}
}
