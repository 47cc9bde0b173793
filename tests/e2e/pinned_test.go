package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/tests/testenv"
)

// pinnedRoot is where the pinned closure is generated. Tar entry names are
// the store paths themselves, so the digests depend on this path: it must
// never change, or the golden file must be regenerated on purpose.
const pinnedRoot = "/tmp/nixoci-pinned-closure-v1"

// pinnedGolden holds the descriptors the pinned closure gave when the
// golden file was written. NIXOCI_UPDATE_PINNED=1 rewrites it; do that only
// for a change that is meant to change digests, and say so in the commit:
// users' registries hold images keyed by these digests.
const pinnedGolden = "testdata/pinned.json"

// pinnedPaths are the pinned closure's store paths, by short name.
var pinnedPaths = map[string]string{
	"lib":     "00000000000000000000000000000lib-libfoo-1.0",
	"wrapped": "1111111111111111111111111wrapped-wrapped-app-2.1",
	"data":    "22222222222222222222222222222dat-data-0.3",
	"root":    "3333333333333333333333333333root-root-env",
	"tiny":    "44444444444444444444444444444tin-tiny",
}

// writePinnedClosure writes the pinned closure: store paths shaped like
// real ones (a library with a lib symlink to a directory, a makeWrapper-style
// program whose wrapper execs a hidden file of its own store path, a data
// package with a long name needing a pax header, a case-hack name, a file
// over 1 MiB, a hard link and an empty directory, and a root environment
// for copy-to-root), and the reference graph. Everything is a pure function
// of the code here.
func writePinnedClosure(t *testing.T) (store string, graph string) {
	t.Helper()
	store = filepath.Join(pinnedRoot, "nix", "store")
	if err := os.RemoveAll(pinnedRoot); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(store, pinnedPaths[name]) }
	w := func(path, content string, mode os.FileMode) {
		testenv.WriteFile(t, path, content, mode)
		// WriteFile's mode is masked by the umask; set it exactly.
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, link string) {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}

	w(filepath.Join(p("lib"), "lib64", "libfoo.so.1.0"), strings.Repeat("\x7fELF libfoo ", 3000), 0o555)
	ln("libfoo.so.1.0", filepath.Join(p("lib"), "lib64", "libfoo.so.1"))
	ln("lib64", filepath.Join(p("lib"), "lib"))
	w(filepath.Join(p("lib"), "share", "doc", "libfoo", "README"), "libfoo documentation\n", 0o444)

	wrapped := p("wrapped")
	w(filepath.Join(wrapped, "bin", ".app-wrapped"), "#!/bin/sh\necho app using "+p("lib")+"/lib/libfoo.so.1\n", 0o555)
	w(filepath.Join(wrapped, "bin", "app"), "#!/bin/sh\nexport LD_LIBRARY_PATH="+p("lib")+"/lib\nexec "+wrapped+"/bin/.app-wrapped \"$@\"\n", 0o555)
	if err := os.MkdirAll(filepath.Join(wrapped, "share", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}

	data := p("data")
	big := make([]byte, 3<<20/2)
	for i := range big {
		big[i] = byte((i*7 + i/251) % 256)
	}
	w(filepath.Join(data, "share", "big.bin"), string(big), 0o444)
	long := filepath.Join(data, "share", strings.Repeat("a-rather-long-directory-name-", 3), strings.Repeat("and-a-long-file-name-", 4)+".txt")
	w(long, "long name\n", 0o444)
	w(filepath.Join(data, "share", "Makefile~nix~case~hack~1"), "case hack\n", 0o444)
	w(filepath.Join(data, "share", "hard-a"), "hard linked\n", 0o444)
	if err := os.Link(filepath.Join(data, "share", "hard-a"), filepath.Join(data, "share", "hard-b")); err != nil {
		t.Fatal(err)
	}

	root := p("root")
	ln(wrapped+"/bin/app", filepath.Join(root, "bin", "app"))
	w(filepath.Join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0o444)
	w(filepath.Join(root, "home", "app", ".profile"), "export PATH=/bin\n", 0o444)
	ln(data+"/share", filepath.Join(root, "share"))

	w(filepath.Join(p("tiny"), "hello"), "hi\n", 0o444)

	type entry struct {
		Path       string   `json:"path"`
		References []string `json:"references"`
	}
	refs := map[string][]string{
		"lib":     {},
		"wrapped": {"lib", "wrapped"},
		"data":    {},
		"root":    {"wrapped", "data"},
		"tiny":    {"lib"},
	}
	var entries []entry
	for _, name := range []string{"lib", "wrapped", "data", "root", "tiny"} {
		e := entry{Path: p(name), References: []string{}}
		for _, r := range refs[name] {
			e.References = append(e.References, p(r))
		}
		entries = append(entries, e)
	}
	graph = writeJSON(t, filepath.Join(t.TempDir(), "graph.json"), entries)
	return store, graph
}

// addedFields are descriptor fields added since the golden file was written.
// They hold no digest, size or path of what is streamed, so the pin ignores
// them: storePaths lists a tar layer's store paths (the layer redesign).
var addedFields = []string{"storePaths"}

// dropAdded removes addedFields from every layer of a decoded descriptor.
func dropAdded(doc any) {
	m, ok := doc.(map[string]any)
	if !ok {
		return
	}
	layers, _ := m["layers"].([]any)
	for _, l := range layers {
		if lm, ok := l.(map[string]any); ok {
			for _, f := range addedFields {
				delete(lm, f)
			}
		}
	}
}

// lockPinned serialises test processes that generate the pinned closure.
func lockPinned(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(pinnedRoot+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(pinnedRoot)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// pinnedTarNames checks that every tar in a descriptor under $TARS is
// named by its layer's diff_id (as --tar-directory names them) and gives
// the document with those names replaced by the ones the golden file was
// written with (layer-0.tar, …, in order), which are not part of any
// digest.
func pinnedTarNames(t *testing.T, key string, data []byte) []byte {
	t.Helper()
	var doc struct {
		Layers []struct {
			DiffID string `json:"diffID"`
			Tar    string `json:"tar"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	n := 0
	for _, l := range doc.Layers {
		if !strings.HasPrefix(l.Tar, "$TARS/") {
			continue
		}
		if want := "$TARS/" + strings.TrimPrefix(l.DiffID, "sha256:") + ".tar"; l.Tar != want {
			t.Errorf("%s: tar %s, want %s (named by the diff_id)", key, l.Tar, want)
		}
		data = []byte(strings.ReplaceAll(string(data), `"`+l.Tar+`"`, fmt.Sprintf(`"$TARS/layer-%d.tar"`, n)))
		n++
	}
	return data
}

// TestPinnedDigests builds descriptors of a fixed generated closure with the
// CLI and compares them, byte for byte after the temporary directory is
// replaced, with the ones the golden file pinned. A change of any digest,
// size, share or fingerprint fails it.
func TestPinnedDigests(t *testing.T) {
	lockPinned(t)
	ctx := testContext(t, 5*time.Minute)
	store, graph := writePinnedClosure(t)
	p := func(name string) string { return filepath.Join(store, pinnedPaths[name]) }
	dir := t.TempDir()
	tars := filepath.Join(dir, "tars")
	if err := os.Mkdir(tars, 0o755); err != nil {
		t.Fatal(err)
	}
	perms := writeJSON(t, filepath.Join(dir, "perms.json"), []map[string]any{
		{"path": p("root"), "regex": "^" + p("root") + "/home/app(/.*)?$", "mode": "0700", "uid": 1000, "gid": 1000, "uname": "app", "gname": "app"},
		{"path": p("data"), "regex": "big\\.bin$", "orMode": "0111"},
	})
	history := writeJSON(t, filepath.Join(dir, "history.json"), map[string]string{"created_by": "pinned test", "comment": "fixed"})
	config := writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{
		"Entrypoint": []string{"/bin/app"},
		"Env":        []string{"PATH=/bin", "LANG=C"},
		"Labels":     map[string]string{"pinned": "yes"},
	})

	out := map[string]json.RawMessage{}
	read := func(key, file string) {
		data := testenv.ReadFile(t, file)
		data = []byte(strings.ReplaceAll(string(data), tars, "$TARS"))
		out[key] = json.RawMessage(pinnedTarNames(t, key, data))
	}
	nixoci := nixoci(t)
	// Popularity layering, copy-to-root, perms, history, gzip.
	gz := filepath.Join(dir, "gzip.json")
	testenv.Must(t, ctx, nixoci, "layers", "-o", gz, "--closure-graph", graph, "--max-layers", "3",
		"--copy-to-root", p("root"), "--perms", perms, "--history", history, p("root"), p("tiny"))
	read("layers-gzip", gz)
	// zstd, two layers without a graph (no references: sorted by path).
	zs := filepath.Join(dir, "zstd.json")
	testenv.Must(t, ctx, nixoci, "layers", "-o", zs, "--compression", "zstd", "--max-layers", "2", p("data"), p("lib"), p("tiny"))
	read("layers-zstd", zs)
	// Uncompressed, kept as tars.
	none := filepath.Join(dir, "none.json")
	testenv.Must(t, ctx, nixoci, "layers", "-o", none, "--compression", "none", "--tar-directory", tars, p("wrapped"))
	read("layers-none", none)
	img := filepath.Join(dir, "image.json")
	testenv.Must(t, ctx, nixoci, "image", "-o", img, "--name", "pinned", "--tag", "v1", "--config", config,
		"--arch", "amd64", "--created", "2024-05-06T07:08:09Z", gz, zs, none)
	read("image", img)
	inspect := testenv.Must(t, ctx, nixoci, "inspect", "--json", "nix:"+img).Stdout
	var insp struct {
		ManifestDigest string          `json:"manifestDigest"`
		Manifest       json.RawMessage `json:"manifest"`
		Config         json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal([]byte(inspect), &insp); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, inspect)
	}
	out["manifestDigest"], _ = json.Marshal(insp.ManifestDigest)
	out["manifest"], out["config"] = insp.Manifest, insp.Config

	if os.Getenv("NIXOCI_UPDATE_PINNED") == "1" {
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, pinnedGolden, string(data)+"\n", 0o644)
		t.Logf("wrote %s", pinnedGolden)
		return
	}
	var want map[string]json.RawMessage
	if err := json.Unmarshal(testenv.ReadFile(t, pinnedGolden), &want); err != nil {
		t.Fatalf("reading %s: %v", pinnedGolden, err)
	}
	for _, key := range []string{"layers-gzip", "layers-zstd", "layers-none", "image", "manifestDigest", "manifest", "config"} {
		var g, w any
		if err := json.Unmarshal(out[key], &g); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if err := json.Unmarshal(want[key], &w); err != nil {
			t.Fatalf("%s in %s: %v", key, pinnedGolden, err)
		}
		dropAdded(g)
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("%s differs from the pinned one in %s (-pinned +now):\n%s", key, pinnedGolden, diff)
		}
	}
	if t.Failed() {
		t.Log("if this change is meant to change digests, rerun with NIXOCI_UPDATE_PINNED=1 and say why in the commit")
	}
}
