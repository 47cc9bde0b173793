package nixbuild

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

func TestAttrsFile(t *testing.T) {
	dir := t.TempDir()
	top := filepath.Join(dir, "build")
	if err := os.MkdirAll(top, 0o755); err != nil {
		t.Fatal(err)
	}
	inTop := filepath.Join(top, AttrsFileName)
	named := filepath.Join(dir, "named.json")
	for _, f := range []string{inTop, named} {
		if err := os.WriteFile(f, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"NIX_ATTRS_JSON_FILE first", map[string]string{"NIX_ATTRS_JSON_FILE": named, "NIX_BUILD_TOP": top}, named},
		// Nix 2.8's sandboxed builds name the file outside the sandbox.
		{"NIX_ATTRS_JSON_FILE missing", map[string]string{"NIX_ATTRS_JSON_FILE": "/tmp/nix-build-x.drv-0/.attrs.json", "NIX_BUILD_TOP": top}, inTop},
		{"build directory", map[string]string{"NIX_BUILD_TOP": top}, inTop},
		{"nothing exists", map[string]string{"NIX_BUILD_TOP": filepath.Join(dir, "none")}, filepath.Join(dir, "none", AttrsFileName)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AttrsFile(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("AttrsFile() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOutput(t *testing.T) {
	tests := []struct {
		name, json, output string
		want               string
		wantErr            string
	}{
		{"out", `{"outputs": {"out": "/nix/store/a-x", "db": "/nix/store/b-x-db"}}`, "out", "/nix/store/a-x", ""},
		{"second output", `{"outputs": {"out": "/nix/store/a-x", "db": "/nix/store/b-x-db"}}`, "db", "/nix/store/b-x-db", ""},
		{"missing output", `{"outputs": {"out": "/nix/store/a-x"}}`, "db", "", `no output "db"`},
		{"no outputs", `{"name": "x"}`, "out", "", `no "outputs"`},
		{"outputs not a map (no structured attrs)", `{"outputs": ["out"]}`, "out", "", "not a map"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAttrs("test", []byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Output(tc.output)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Output(%q) = %q, %v; want error containing %q", tc.output, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Output(%q) = %q, %v; want %q", tc.output, got, err, tc.want)
			}
		})
	}
}

func TestLoadAttrsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want string
	}{
		{"missing", filepath.Join(dir, "none.json"), "use the nix/ library"},
		{"malformed", bad, "parsing derivation attributes " + bad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadAttrs(tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadAttrs(%s) = %v, want an error containing %q", tc.file, err, tc.want)
			}
		})
	}
}

func TestRunUnknownKind(t *testing.T) {
	err := Run(context.Background(), "tarball", filepath.Join(t.TempDir(), "attrs.json"), "", nil)
	if err == nil || !strings.Contains(err.Error(), `unknown derivation kind "tarball"`) || !strings.Contains(err.Error(), "image") {
		t.Errorf("Run(tarball) = %v, want an error listing the kinds", err)
	}
}

// writeAttrs writes a structured attributes file.
func writeAttrs(t *testing.T, dir string, attrs map[string]any) string {
	t.Helper()
	data, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, ".attrs.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestWriteScript(t *testing.T) {
	tests := []struct {
		name, scriptName, text string
		wantErr                string
	}{
		{name: "script", scriptName: "copy-to-registry", text: "#!/bin/sh\necho hi\n"},
		{name: "slash in name", scriptName: "../x", text: "x", wantErr: "without slashes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			file := writeAttrs(t, dir, map[string]any{"outputs": map[string]string{"out": out}, "scriptName": tc.scriptName, "text": tc.text})
			err := Run(context.Background(), "write-script", file, dir, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("write-script = %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			script := filepath.Join(out, "bin", tc.scriptName)
			fi, err := os.Stat(script)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o555 {
				t.Errorf("%s has mode %v, want 0555", script, fi.Mode().Perm())
			}
			if data, _ := os.ReadFile(script); string(data) != tc.text {
				t.Errorf("%s holds %q, want %q", script, data, tc.text)
			}
		})
	}
}

// fakeStore makes directories standing for store paths, each with one file.
func fakeStore(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, "0000000000000000000000000000000"+n[:1]+"-"+n)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "file"), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
		out[n] = p
	}
	return out
}

// graphJSON is exportReferencesGraph's JSON for paths (name to references).
func graphJSON(store map[string]string, refs map[string][]string) []map[string]any {
	var g []map[string]any
	for name, p := range store {
		var r []string
		for _, ref := range refs[name] {
			r = append(r, store[ref])
		}
		g = append(g, map[string]any{"path": p, "narHash": "sha256:00", "narSize": 1, "references": r})
	}
	return g
}

func TestBuildLayerChain(t *testing.T) {
	store := fakeStore(t, "app", "lib", "libc", "root")
	refs := map[string][]string{"app": {"lib", "libc"}, "lib": {"libc"}, "root": {"app"}}
	dir := t.TempDir()
	ctx := context.Background()

	// The base layer holds libc; the next is built on it.
	base := filepath.Join(dir, "base")
	file := writeAttrs(t, t.TempDir(), map[string]any{
		"outputs": map[string]string{"out": base}, "deps": []string{store["libc"]}, "maxLayers": 1,
		"reproducible": true, "compression": "none", "closure": graphJSON(store, refs),
	})
	if err := Run(ctx, "layers", file, dir, nil); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top")
	file = writeAttrs(t, t.TempDir(), map[string]any{
		"outputs": map[string]string{"out": top}, "deps": []string{store["app"]}, "copyToRoot": []string{store["root"]},
		"excludeLayers": []string{base}, "maxLayers": 2, "reproducible": false, "compression": "gzip",
		"history": map[string]any{"created_by": "test"}, "closure": graphJSON(store, refs),
	})
	if err := Run(ctx, "layers", file, dir, nil); err != nil {
		t.Fatal(err)
	}

	if got := readStorePaths(t, base); !cmp.Equal(got, []string{store["libc"]}) {
		t.Errorf("base layer holds %v, want only libc", got)
	}
	topLayers, err := descriptor.LoadLayers(filepath.Join(top, LayersFileName))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topLayers.Layers); n != 2 {
		t.Fatalf("top has %d layers, want 2 (maxLayers)", n)
	}
	// libc is below: app and lib only, and root relocated.
	if got := readStorePaths(t, top); !cmp.Equal(got, []string{store["app"], store["lib"]}) {
		t.Errorf("top layers hold %v in the store, want app and lib", got)
	}
	for i, l := range topLayers.Layers {
		if l.Tar == "" || !strings.HasPrefix(l.Tar, top+"/") {
			t.Errorf("layer %d of a non-reproducible buildLayer has tar %q, want a file in %s", i, l.Tar, top)
			continue
		}
		if l.History == nil || l.History.CreatedBy != "test" {
			t.Errorf("layer %d history = %+v, want created_by test", i, l.History)
		}
		// The stored tar is what the layer describes.
		again, err := layer.DescribeTar(ctx, l.Tar, "gzip", l.History)
		if err != nil {
			t.Fatal(err)
		}
		if again.DiffID() != l.DiffID {
			t.Errorf("layer %d: tar %s has diff_id %s, descriptor says %s", i, l.Tar, again.DiffID(), l.DiffID)
		}
	}
	names := tarNames(t, topLayers.Layers[len(topLayers.Layers)-1].Tar)
	if !contains(names, "file") {
		t.Errorf("last layer %v has no /file from the copyToRoot path", names)
	}
}

func TestBuildImage(t *testing.T) {
	store := fakeStore(t, "app", "lib", "root")
	refs := map[string][]string{"app": {"lib"}, "root": {"app"}}
	dir := t.TempDir()
	ctx := context.Background()
	below := filepath.Join(dir, "below")
	file := writeAttrs(t, t.TempDir(), map[string]any{
		"outputs": map[string]string{"out": below}, "deps": []string{store["lib"]}, "maxLayers": 1,
		"reproducible": true, "compression": "none", "closure": graphJSON(store, refs),
	})
	if err := Run(ctx, "layers", file, dir, nil); err != nil {
		t.Fatal(err)
	}
	tag := "v1"
	tests := []struct {
		name     string
		attrs    map[string]any
		wantTag  string
		wantLays int
		store    []string
	}{
		{
			name: "config path also copied to root stays in the store",
			attrs: map[string]any{
				"imageName": "Test/App", "config": map[string]any{"Cmd": []string{store["root"] + "/file"}},
				"configPaths": []string{store["root"]}, "copyToRoot": []string{store["root"]}, "maxLayers": 1,
			},
			wantLays: 1, store: []string{store["app"], store["lib"], store["root"]},
		},
		{
			name: "layers below are not repeated",
			attrs: map[string]any{
				"imageName": "test/app", "imageTag": tag, "configPaths": []string{store["app"]}, "layers": []string{below}, "maxLayers": 5,
			},
			wantTag: tag, wantLays: 2, store: []string{store["app"], store["lib"]},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "0123456789abcdefghijklmnopqrstuv-image-app.json")
			attrs := map[string]any{"outputs": map[string]string{"out": out}, "compression": "gzip", "created": "1970-01-01T00:00:01Z", "arch": "amd64", "os": "linux", "closure": graphJSON(store, refs)}
			for k, v := range tc.attrs {
				attrs[k] = v
			}
			scratch := t.TempDir()
			if err := Run(ctx, "image", writeAttrs(t, t.TempDir(), attrs), scratch, nil); err != nil {
				t.Fatal(err)
			}
			// The image's own layers go to the descriptor as values:
			// nothing is written to read back.
			if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
				t.Errorf("building the image left %d files in the scratch directory, want none", len(entries))
			}
			img, err := descriptor.LoadImage(out)
			if err != nil {
				t.Fatal(err)
			}
			// The default tag is the Nix library's (the output's hash,
			// in its passthru); the builder records only a given one.
			if img.Name != "test/app" || img.Tag != tc.wantTag {
				t.Errorf("image is %s:%s, want test/app:%s", img.Name, img.Tag, tc.wantTag)
			}
			if len(img.Layers) != tc.wantLays {
				t.Errorf("image has %d layers, want %d", len(img.Layers), tc.wantLays)
			}
			seen := map[string]int{}
			for _, l := range img.Layers {
				for _, p := range l.Paths {
					if p.Rewrite == nil {
						seen[p.Path]++
					}
				}
			}
			var got []string
			for p, n := range seen {
				got = append(got, p)
				if n != 1 {
					t.Errorf("store path %s is in %d layers, want 1", p, n)
				}
			}
			if !cmp.Equal(sorted(got), sorted(tc.store)) {
				t.Errorf("store paths in the image = %v, want %v", sorted(got), sorted(tc.store))
			}
		})
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tarNames lists the entry names of a tar file.
func tarNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
	}
}

// readStorePaths returns the store paths a buildLayer output's layers hold
// at their store location, sorted: a tar layer lists its own.
func readStorePaths(t *testing.T, dir string) []string {
	t.Helper()
	lower, err := loadLayerDirs(context.Background(), []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for p := range layer.StorePaths(lower...) {
		out = append(out, p)
	}
	return sorted(out)
}
