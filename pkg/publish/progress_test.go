package publish

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// pushedManifest fetches an OCI or Docker schema 2 manifest from host.
func pushedManifest(t *testing.T, host, repo, tag string) ocispec.Manifest {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m ocispec.Manifest
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s = %s, %v", repo, tag, resp.Status, err)
	}
	return m
}

var doneLine = regexp.MustCompile(`(?m)^blob (sha256:[0-9a-f]{64}): done(: (.*) as (sha256:[0-9a-f]{64}))? \((\d+) bytes\)$`)

// TestProgressTellsTheTruth copies to a registry with and without
// recompression and checks each "done" line against the manifest the
// registry got: the blob it names, what happened to it and its size.
func TestProgressTellsTheTruth(t *testing.T) {
	a := tree(t, map[string]string{"bin/a": "alpha\n"})
	b := tree(t, map[string]string{"share/b": strings.Repeat("beta ", 40000)})
	for _, tc := range []struct {
		name        string
		compression string // of the descriptor
		format      string // --dest-compress-format
		// conversion is what the lines must say happened; "" is nothing.
		conversion string
	}{
		{"gzip as is", descriptor.Gzip, "", ""},
		{"gzip to zstd", descriptor.Gzip, "zstd", "recompressed from gzip to zstd"},
		{"zstd to gzip", descriptor.Zstd, "gzip", "recompressed from zstd to gzip"},
		// Uncompressed layers go as they are described, so that the
		// manifest is the one `nixoci inspect` shows …
		{"uncompressed to a registry", descriptor.None, "", ""},
		// … unless a compression is asked for.
		{"uncompressed, gzip asked", descriptor.None, "gzip", "compressed with gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, host := testenv.StartFaultRegistry(t)
			dir := filepath.Join(t.TempDir(), "image")
			img := writeImage(t, dir, tc.compression, nil, rooted(a), rooted(b))
			var out bytes.Buffer
			err := Copy(testContext(t), "nix:"+dir, "docker://"+host+"/nixoci/progress:v1", Options{
				DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), Progress: &out, DestCompressFormat: tc.format,
			})
			if err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			report := out.String()
			if strings.Contains(report, "interrupted") {
				t.Errorf("report of a successful copy says interrupted:\n%s", report)
			}
			m := pushedManifest(t, host, "nixoci/progress", "v1")
			lines := doneLine.FindAllStringSubmatch(report, -1)
			if len(lines) != len(img.Layers) {
				t.Fatalf("report has %d done lines, want %d:\n%s", len(lines), len(img.Layers), report)
			}
			for i, l := range img.Layers {
				var line []string
				for _, c := range lines {
					if c[1] == l.Digest.String() {
						line = c
					}
				}
				if line == nil {
					t.Errorf("no done line for layer %d %s:\n%s", i, l.Digest, report)
					continue
				}
				pushed := m.Layers[i]
				if line[3] != tc.conversion {
					t.Errorf("layer %d: line says %q, want %q:\n%s", i, line[3], tc.conversion, line[0])
				}
				if tc.conversion != "" && line[4] != pushed.Digest.String() {
					t.Errorf("layer %d: line names %s, the registry got %s", i, line[4], pushed.Digest)
				}
				if tc.conversion == "" && pushed.Digest != l.Digest {
					t.Errorf("layer %d: the registry got %s, the line says it was sent as is", i, pushed.Digest)
				}
				if line[5] != fmt.Sprint(pushed.Size) {
					t.Errorf("layer %d: line says %s bytes, the registry's blob has %d", i, line[5], pushed.Size)
				}
			}
		})
	}
}

// TestLineReporter feeds the reporter events as containers/image sends
// them and checks the lines for each outcome.
func TestLineReporter(t *testing.T) {
	gz := types.BlobInfo{Digest: digest.FromString("gz"), Size: 100, MediaType: ocispec.MediaTypeImageLayerGzip}
	plain := types.BlobInfo{Digest: digest.FromString("plain"), Size: 300, MediaType: ocispec.MediaTypeImageLayer}
	have := types.BlobInfo{Digest: digest.FromString("have"), Size: 50, MediaType: ocispec.MediaTypeImageLayerGzip}
	config := types.BlobInfo{Digest: digest.FromString("config"), Size: 20, MediaType: ocispec.MediaTypeImageConfig}
	zst := ocispec.Descriptor{Digest: digest.FromString("zst"), Size: 90, MediaType: ocispec.MediaTypeImageLayerZstd}
	gzOfPlain := ocispec.Descriptor{Digest: digest.FromString("gz of plain"), Size: 120, MediaType: ocispec.MediaTypeImageLayerGzip}
	manifest, err := json.Marshal(ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{Digest: config.Digest, Size: config.Size, MediaType: config.MediaType},
		Layers:    []ocispec.Descriptor{zst, gzOfPlain, {Digest: have.Digest, Size: have.Size, MediaType: have.MediaType}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manifest = append([]byte(`{"schemaVersion":2,`), manifest[1:]...)
	var out bytes.Buffer
	r := newLineReporter(&out)
	for _, p := range []types.ProgressProperties{
		{Event: types.ProgressEventSkipped, Artifact: have},
		{Event: types.ProgressEventNewArtifact, Artifact: gz},
		{Event: types.ProgressEventRead, Artifact: gz, Offset: 40, OffsetUpdate: 40},
		{Event: types.ProgressEventDone, Artifact: gz, Offset: 90, OffsetUpdate: 50},
		{Event: types.ProgressEventDone, Artifact: plain, Offset: 120, OffsetUpdate: 120},
		{Event: types.ProgressEventDone, Artifact: config, Offset: 0},
	} {
		r.event(p)
	}
	if got := out.String(); got != fmt.Sprintf("blob %s: skipped: already exists\n", have.Digest) {
		t.Errorf("lines before the copy ended = %q, want only the skipped blob", got)
	}
	r.finish(manifest)
	want := fmt.Sprintf(`blob %s: skipped: already exists
blob %s: done: recompressed from gzip to zstd as %s (90 bytes)
blob %s: done: compressed with gzip as %s (120 bytes)
config %s: skipped: already exists
`, have.Digest, gz.Digest, zst.Digest, plain.Digest, gzOfPlain.Digest, config.Digest)
	if got := out.String(); got != want {
		t.Errorf("lines =\n%s\nwant\n%s", got, want)
	}
}
