package publish

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	nix "github.com/nixoci/nixoci/transport"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// twoLayerImage writes a gzip image of two layers and returns its directory.
func twoLayerImage(t *testing.T) (string, *descriptor.Image) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	a := tree(t, map[string]string{"bin/a": "alpha\n"})
	b := tree(t, map[string]string{"share/b": strings.Repeat("beta ", 40000)})
	return dir, writeImage(t, dir, descriptor.Gzip, []string{"/bin/a"}, rooted(a), rooted(b))
}

// readLayout returns the manifest of the only image in an OCI layout and
// checks that every blob it names is there with the right digest.
func readLayout(t *testing.T, dir string) ocispec.Manifest {
	t.Helper()
	blob := func(d digest.Digest) []byte {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
		if err != nil {
			t.Fatalf("layout blob: %v", err)
		}
		if got := digest.FromBytes(data); got != d {
			t.Fatalf("layout blob %s has digest %s", d, got)
		}
		return data
	}
	var idx ocispec.Index
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatalf("layout index: %v", err)
	}
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("layout index = %s, %v; want one manifest", data, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(idx.Manifests[0].Digest), &m); err != nil {
		t.Fatal(err)
	}
	blob(m.Config.Digest)
	for _, l := range m.Layers {
		blob(l.Digest)
	}
	return m
}

// filesIn returns the regular files of a (possibly compressed) layer blob.
func filesIn(t *testing.T, algorithm string, blob []byte) map[string]string {
	t.Helper()
	r, err := compress.NewReader(algorithm, bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading layer tar: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = string(data)
		}
	}
}

func TestCopyToRegistry(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	dir, img := twoLayerImage(t)
	dest := "docker://" + reg.host + "/nixoci/app:v1"

	var first bytes.Buffer
	err := Copy(ctx, "nix:"+dir, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), Progress: &first})
	if err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	requests, sent := reg.uploads()
	var want int64
	for _, l := range img.Layers {
		want += l.Size
	}
	if requests == 0 || sent < want {
		t.Errorf("first push uploaded %d bytes in %d requests, want at least the layers' %d bytes", sent, requests, want)
	}
	for _, l := range img.Layers {
		if line := fmt.Sprintf("blob %s: done (%d bytes)\n", l.Digest, l.Size); !strings.Contains(first.String(), line) {
			t.Errorf("first push report lacks %q:\n%s", line, first.String())
		}
	}

	// A machine that never pushed: a fresh, empty blob-info cache.
	var second bytes.Buffer
	err = Copy(ctx, "nix:"+dir, dest, Options{DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), Progress: &second})
	if err != nil {
		t.Fatalf("second Copy() = %v", err)
	}
	if requests, sent := reg.uploads(); requests != 0 || sent != 0 {
		t.Errorf("second push uploaded %d bytes in %d requests, want 0 and 0", sent, requests)
	}
	for _, l := range img.Layers {
		if line := fmt.Sprintf("blob %s: skipped: already exists\n", l.Digest); !strings.Contains(second.String(), line) {
			t.Errorf("second push report lacks %q:\n%s", line, second.String())
		}
	}
	if !strings.Contains(second.String(), "config sha256:") || strings.Contains(second.String(), "done (") {
		t.Errorf("second push report should show the config skipped and nothing done:\n%s", second.String())
	}

	// Pull it back and check it is the described image.
	layout := filepath.Join(t.TempDir(), "pulled")
	if err := Copy(ctx, dest, "oci:"+layout+":v1", Options{SrcTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir()}); err != nil {
		t.Fatalf("Copy(pull) = %v", err)
	}
	m := readLayout(t, layout)
	if len(m.Layers) != len(img.Layers) {
		t.Fatalf("pulled %d layers, want %d", len(m.Layers), len(img.Layers))
	}
	for i, l := range m.Layers {
		if l.Digest != img.Layers[i].Digest || l.Size != img.Layers[i].Size {
			t.Errorf("pulled layer %d = %s/%d, want %s/%d", i, l.Digest, l.Size, img.Layers[i].Digest, img.Layers[i].Size)
		}
	}
	blob, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", m.Layers[0].Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if got := filesIn(t, descriptor.Gzip, blob)["bin/a"]; got != "alpha\n" {
		t.Errorf("pulled layer 0 bin/a = %q, want %q", got, "alpha\n")
	}
}

func TestCopyFailedBlobPushesNoManifest(t *testing.T) {
	ctx := testContext(t)
	reg := newRegistry(t)
	reg.breakUpload = func(n int) bool { return n == 2 }
	dir, _ := twoLayerImage(t)
	err := Copy(ctx, "nix:"+dir, "docker://"+reg.host+"/nixoci/broken:v1", Options{
		DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), ImageParallelCopies: 1, RetryTimes: intPtr(0),
	})
	if err == nil {
		t.Fatal("Copy() with a broken upload = nil, want an error")
	}
	if reg.manifestPuts != 0 {
		t.Errorf("manifest PUTs = %d, want 0", reg.manifestPuts)
	}
	resp, err := http.Get("http://" + reg.host + "/v2/nixoci/broken/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET manifest after a failed push = %d, want 404", resp.StatusCode)
	}
}

func TestCopyErrors(t *testing.T) {
	ctx := testContext(t)
	dir, _ := twoLayerImage(t)
	src := "nix:" + dir
	authReg := newRegistry(t)
	authReg.user, authReg.pass = "alice", "secret"
	plainReg := newRegistry(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	insecure := Options{DestTLSVerify: boolPtr(false)}

	for _, tc := range []struct {
		name     string
		src      string
		dest     string
		opts     Options
		is       error
		side     Side
		mentions []string
	}{
		{name: "unknown transport", src: src, dest: "foo:bar", is: ErrUnknownTransport, mentions: []string{"foo:bar", "nix", "docker-daemon", "oci"}},
		{name: "no transport", src: "alpine", dest: "oci:/tmp/x", is: ErrUnknownTransport, mentions: []string{`"alpine"`, "TRANSPORT:REFERENCE"}},
		{name: "wrong credentials", src: src, dest: "docker://" + authReg.host + "/a/b:c", opts: Options{DestTLSVerify: boolPtr(false), DestCreds: &Credentials{"alice", "wrong"}}, is: ErrUnauthorized, side: Destination, mentions: []string{authReg.host + "/a/b:c", "destination credentials"}},
		{name: "missing credentials", src: src, dest: "docker://" + authReg.host + "/a/b:c", opts: insecure, is: ErrUnauthorized, side: Destination, mentions: []string{"destination credentials"}},
		{name: "wrong source credentials", src: "docker://" + authReg.host + "/a/b:c", dest: "oci:" + filepath.Join(t.TempDir(), "x"), opts: Options{SrcTLSVerify: boolPtr(false), SrcCreds: &Credentials{"bob", "x"}}, is: ErrUnauthorized, side: Source, mentions: []string{"source", "source credentials"}},
		{name: "unreachable registry", src: src, dest: "docker://" + closed + "/a/b:c", opts: insecure, is: ErrUnreachable, side: Destination, mentions: []string{closed, "running"}},
		{name: "plain http with tls verify", src: src, dest: "docker://" + plainReg.host + "/a/b:c", opts: Options{DestTLSVerify: boolPtr(true)}, is: ErrTLS, side: Destination, mentions: []string{plainReg.host, "turn off TLS verification for the destination"}},
		{name: "bad compression", src: src, dest: "oci:/tmp/x", opts: Options{DestCompressFormat: "lzma"}, is: ErrBadOption, mentions: []string{"zstd"}},
		{name: "bad additional tag", src: src, dest: "oci:/tmp/x", opts: Options{AdditionalTags: []string{"name-only"}}, is: ErrBadOption, mentions: []string{"NAME:TAG"}},
		{name: "missing descriptor", src: "nix:" + filepath.Join(dir, "nope.json"), dest: "oci:" + filepath.Join(t.TempDir(), "x"), is: fs.ErrNotExist, mentions: []string{"nope.json"}},
		{name: "nix destination", src: "oci:" + filepath.Join(t.TempDir(), "x"), dest: "nix:" + dir, is: nix.ErrSourceOnly},
		{name: "rejecting policy", src: src, dest: "oci:" + filepath.Join(t.TempDir(), "x"), opts: Options{PolicyPath: rejectPolicy(t)}, mentions: []string{"rejected"}},
		{name: "missing policy", src: src, dest: "oci:/tmp/x", opts: Options{PolicyPath: "/nonexistent/policy.json"}, is: fs.ErrNotExist, mentions: []string{"/nonexistent/policy.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.BlobInfoCacheDir = t.TempDir()
			err := Copy(ctx, tc.src, tc.dest, tc.opts)
			if err == nil {
				t.Fatalf("Copy(%s, %s) = nil, want an error", tc.src, tc.dest)
			}
			t.Logf("Copy() = %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Copy() = %v; want errors.Is %v", err, tc.is)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Copy() = %v; want it to mention %q", err, m)
				}
			}
			if flag := regexp.MustCompile(`--[a-z]`).FindString(err.Error()); flag != "" {
				t.Errorf("Copy() = %v; a library error names a flag (%s…)", err, flag)
			}
			var re *RegistryError
			if got := errors.As(err, &re); got != (tc.side != "") || (got && re.Side != tc.side) {
				t.Errorf("Copy() = %v; want a RegistryError of side %q (got %+v)", err, tc.side, re)
			}
		})
	}
}

func TestSourceFor(t *testing.T) {
	src, err := nix.ParseReference("/x/image.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dest         string
		uncompressed bool
	}{
		{"docker-daemon", true},
		{"containers-storage", true},
		{"docker-archive", true},
		{"docker", false},
		{"oci", false},
		{"dir", false},
		{"oci-archive", false},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			got, err := SourceFor(src, tc.dest)
			if err != nil {
				t.Fatal(err)
			}
			if u := strings.HasSuffix(got.StringWithinTransport(), ":uncompressed"); u != tc.uncompressed {
				t.Errorf("SourceFor(%s) = %s, want uncompressed=%v", tc.dest, got.StringWithinTransport(), tc.uncompressed)
			}
		})
	}
}

func TestCopyToDockerArchive(t *testing.T) {
	ctx := testContext(t)
	dir, img := twoLayerImage(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	err := Copy(ctx, "nix:"+dir, "docker-archive:"+archive+":nixoci/app:v1", Options{AdditionalTags: []string{"nixoci/app:extra"}})
	if err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]digest.Digest{}
	var manifest []struct {
		RepoTags []string
		Layers   []string
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = digest.FromBytes(data)
		if h.Name == "manifest.json" {
			if err := json.Unmarshal(data, &manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 2 {
		t.Fatalf("manifest.json = %+v, want one image of 2 layers", manifest)
	}
	tags := strings.Join(manifest[0].RepoTags, " ")
	if !strings.Contains(tags, "nixoci/app:v1") || !strings.Contains(tags, "nixoci/app:extra") {
		t.Errorf("RepoTags = %v, want v1 and extra", manifest[0].RepoTags)
	}
	for i, name := range manifest[0].Layers {
		if files[name] != img.Layers[i].DiffID {
			t.Errorf("archive layer %d (%s) digest = %s, want the diff_id %s", i, name, files[name], img.Layers[i].DiffID)
		}
	}
}

func TestCopyTTYUsesContainersImageReport(t *testing.T) {
	ctx := testContext(t)
	dir, img := twoLayerImage(t)
	var out bytes.Buffer
	if err := Copy(ctx, "nix:"+dir, "oci:"+filepath.Join(t.TempDir(), "l"), Options{TTY: true, Progress: &out}); err != nil {
		t.Fatalf("Copy() = %v", err)
	}
	// Not a terminal: containers/image falls back to its own lines.
	if want := "Copying blob " + img.Layers[0].Digest.String(); !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), ": done (") {
		t.Errorf("TTY report has nixoci's per-blob lines:\n%s", out.String())
	}
}

// rejectPolicy writes a signature policy that rejects every image.
func rejectPolicy(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(`{"default":[{"type":"reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
