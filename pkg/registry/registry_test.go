package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/tests/testenv"
)

// server is an in-process registry; put uploads blobs and manifests with
// the distribution API.
type server struct {
	t    *testing.T
	host string
}

func newServer(t *testing.T) *server {
	t.Helper()
	// The registry logs every request to the standard logger.
	logrus.SetOutput(io.Discard)
	_, host := testenv.StartFaultRegistry(t)
	return &server{t: t, host: host}
}

func (s *server) do(method, url, contentType string, body []byte) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusAccepted {
		s.t.Fatalf("%s %s = %s", method, url, resp.Status)
	}
	return resp
}

// blob uploads data to repo and returns its descriptor.
func (s *server) blob(repo, mediaType string, data []byte) ocispec.Descriptor {
	s.t.Helper()
	d := digest.FromBytes(data)
	resp := s.do(http.MethodPost, "http://"+s.host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + s.host + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	s.do(http.MethodPut, loc+sep+"digest="+d.String(), "application/octet-stream", data)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// manifest uploads v as a manifest of repo under ref and returns its descriptor.
func (s *server) manifest(repo, ref, mediaType string, v any) ocispec.Descriptor {
	s.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	s.do(http.MethodPut, "http://"+s.host+"/v2/"+repo+"/manifests/"+ref, mediaType, data)
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// image uploads a one-layer image for arch and returns its manifest's
// descriptor and its layer's.
func (s *server) image(repo, arch string) (manifest, layer ocispec.Descriptor) {
	s.t.Helper()
	cfg := s.blob(repo, ocispec.MediaTypeImageConfig, []byte(fmt.Sprintf(`{"architecture":%q,"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`, arch)))
	layer = s.blob(repo, ocispec.MediaTypeImageLayer, []byte("layer of "+arch))
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}}
	manifest = s.manifest(repo, arch, ocispec.MediaTypeImageManifest, m)
	manifest.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
	return manifest, layer
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestGetManifest(t *testing.T) {
	s := newServer(t)
	amd, _ := s.image("multi", "amd64")
	arm, _ := s.image("multi", "arm64")
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, arm}}
	s.manifest("multi", "latest", ocispec.MediaTypeImageIndex, index)
	ref := "docker://" + s.host + "/multi:latest"
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			data, mt, err := GetManifest(ctx(t), ref, Options{OS: "linux", Arch: arch})
			if err != nil {
				t.Fatalf("GetManifest(%s) = %v", arch, err)
			}
			want := map[string]digest.Digest{"amd64": amd.Digest, "arm64": arm.Digest}[arch]
			if digest.FromBytes(data) != want || mt != ocispec.MediaTypeImageManifest {
				t.Errorf("GetManifest(%s) = %s (%s), want the %s manifest %s", arch, digest.FromBytes(data), mt, arch, want)
			}
		})
	}
	if _, _, err := GetManifest(ctx(t), ref, Options{OS: "linux", Arch: "s390x"}); err == nil || !strings.Contains(err.Error(), ref) {
		t.Errorf("GetManifest(s390x) = %v, want an error naming %s", err, ref)
	}
	if _, _, err := GetManifest(ctx(t), "docker://"+s.host+"/nothing:here", Options{}); err == nil {
		t.Error("GetManifest(missing image) = nil error")
	}
}

func TestFetchBlob(t *testing.T) {
	s := newServer(t)
	_, layer := s.image("one", "amd64")
	ref := "docker://" + s.host + "/one:amd64"
	dir := t.TempDir()
	file := filepath.Join(dir, "blob")
	if err := FetchBlob(ctx(t), ref, layer.Digest, layer.Size, file, Options{}); err != nil {
		t.Fatalf("FetchBlob() = %v", err)
	}
	if data, err := os.ReadFile(file); err != nil || digest.FromBytes(data) != layer.Digest {
		t.Errorf("FetchBlob() wrote %q (%v), want the blob %s", data, err, layer.Digest)
	}
	// A wrong size is refused and leaves nothing behind.
	bad := filepath.Join(dir, "bad")
	if err := FetchBlob(ctx(t), ref, layer.Digest, layer.Size+1, bad, Options{}); err == nil || !strings.Contains(err.Error(), layer.Digest.String()) {
		t.Errorf("FetchBlob(wrong size) = %v, want an error naming the blob", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("FetchBlob(wrong size) left a file behind")
	}
	if err := FetchBlob(ctx(t), ref, "sha256:nothex", 1, bad, Options{}); err == nil {
		t.Error("FetchBlob(bad digest) = nil error")
	}
}
