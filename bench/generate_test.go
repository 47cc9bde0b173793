package bench

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// smallOptions make a closure small enough for a unit test.
func smallOptions(seed uint64) Options {
	return Options{Seed: seed, TotalBytes: 8 << 20, SmallPaths: 24, LargePaths: 2}
}

// summary lists every entry under root: relative name, type, mode,
// and the sha256 of file contents or the link target.
func summary(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %x", fi.Size(), h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			// Absolute targets name the generated root; compare them
			// relative to it.
			line += " -> " + strings.TrimPrefix(target, root)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return out
}

func TestGenerate(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	ca, err := Generate(a, smallOptions(1))
	if err != nil {
		t.Fatalf("Generate() = %v", err)
	}
	cb, err := Generate(b, smallOptions(1))
	if err != nil {
		t.Fatalf("Generate() = %v", err)
	}
	if _, err := Generate(c, smallOptions(2)); err != nil {
		t.Fatalf("Generate() = %v", err)
	}
	sa, sb, sc := summary(t, ca.Store), summary(t, cb.Store), summary(t, filepath.Join(c, "nix", "store"))

	t.Run("same seed, same tree", func(t *testing.T) {
		if strings.Join(sa, "\n") != strings.Join(sb, "\n") {
			t.Errorf("two closures from seed 1 differ (%d and %d entries)", len(sa), len(sb))
		}
	})
	t.Run("other seed, other tree", func(t *testing.T) {
		if strings.Join(sa, "\n") == strings.Join(sc, "\n") {
			t.Error("closures from seeds 1 and 2 are identical")
		}
	})
	t.Run("counts match the tree", func(t *testing.T) {
		var files, symlinks int
		var bytes, largest int64
		var small, exec int
		err := filepath.WalkDir(ca.Store, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case fi.Mode().IsRegular():
				files++
				bytes += fi.Size()
				largest = max(largest, fi.Size())
				if fi.Size() <= smallMax {
					small++
				}
				if fi.Mode()&0o111 != 0 {
					exec++
				}
			case fi.Mode()&fs.ModeSymlink != 0:
				symlinks++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files != ca.Files || bytes != ca.Bytes || symlinks != ca.Symlinks {
			t.Errorf("Generate() reports %d files, %d bytes, %d symlinks; tree has %d, %d, %d",
				ca.Files, ca.Bytes, ca.Symlinks, files, bytes, symlinks)
		}
		want := smallOptions(1).TotalBytes
		if bytes < want*9/10 || bytes > want*11/10 {
			t.Errorf("tree holds %d bytes, want about %d", bytes, want)
		}
		if largest < 1<<20 || small < files/2 || exec < len(ca.Paths) || symlinks == 0 {
			t.Errorf("tree lacks variety: largest file %d bytes, %d of %d files small, %d executables, %d symlinks",
				largest, small, files, exec, symlinks)
		}
	})
	t.Run("graph lists every path once, without cycles", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "graph.json")
		if err := ca.WriteGraph(file); err != nil {
			t.Fatalf("WriteGraph() = %v", err)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var entries []struct {
			Path       string   `json:"path"`
			NarSize    int64    `json:"narSize"`
			References []string `json:"references"`
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			t.Fatalf("graph is not exportReferencesGraph JSON: %v", err)
		}
		refs := map[string][]string{}
		var total int64
		for _, e := range entries {
			if _, dup := refs[e.Path]; dup {
				t.Errorf("graph lists %s twice", e.Path)
			}
			refs[e.Path] = e.References
			total += e.NarSize
		}
		if len(refs) != len(ca.Paths) || total != ca.Bytes {
			t.Errorf("graph has %d paths of %d bytes, want %d of %d", len(refs), total, len(ca.Paths), ca.Bytes)
		}
		referenced := map[string]int{}
		// state: 1 while visiting, 2 when done; meeting 1 again is a cycle.
		state := map[string]int{}
		var visit func(p string)
		visit = func(p string) {
			state[p] = 1
			for _, r := range refs[p] {
				referenced[r]++
				if _, ok := refs[r]; !ok {
					t.Errorf("%s refers to %s, which is not in the graph", p, r)
					continue
				}
				switch state[r] {
				case 0:
					visit(r)
				case 1:
					t.Errorf("cycle through %s and %s", p, r)
				}
			}
			state[p] = 2
		}
		for _, p := range ca.Paths {
			if state[p] == 0 {
				visit(p)
			}
		}
		top := ""
		for p, n := range referenced {
			if top == "" || n > referenced[top] || n == referenced[top] && p < top {
				top = p
			}
		}
		if top == "" || ca.sizes[top] < 1<<20 {
			t.Errorf("the most referenced path %q holds %d bytes; want one of the large paths", top, ca.sizes[top])
		}
	})
	t.Run("store paths look like Nix's", func(t *testing.T) {
		if got, want := len(ca.Paths), 26; got != want {
			t.Fatalf("%d store paths, want %d", got, want)
		}
		for _, p := range ca.Paths {
			if filepath.Dir(p) != ca.Store {
				t.Errorf("store path %s is not in %s", p, ca.Store)
			}
			base := filepath.Base(p)
			if len(base) < 34 || base[32] != '-' || strings.Trim(base[:32], nixBase32) != "" {
				t.Errorf("store path name %q is not HASH-NAME with a 32-character Nix base32 hash", base)
			}
		}
	})
}

func TestVariant(t *testing.T) {
	dir := t.TempDir()
	c, err := Generate(dir, smallOptions(7))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Paths[3]
	v, err := c.Variant(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(v) != c.Store || v[:len(v)-len(filepath.Base(p))+31] != p[:len(p)-len(filepath.Base(p))+31] || v == p {
		t.Errorf("Variant(%s) = %s, want the same directory and name but the last hash character", p, v)
	}
	for _, q := range c.Paths {
		if (q < p) != (q < v) && q != p {
			t.Errorf("Variant(%s) = %s sorts on the other side of %s", p, v, q)
		}
	}
	a, b := summary(t, p), summary(t, v)
	if len(a) != len(b) {
		t.Fatalf("variant has %d entries, the original %d", len(b), len(a))
	}
	differ := 0
	for i := range a {
		if a[i] != b[i] {
			differ++
		}
	}
	if differ != 1 {
		t.Errorf("variant differs in %d entries, want 1 (the executable):\n%v\n%v", differ, a, b)
	}
	if v2, err := c.Variant(p, 1); err != nil || v2 == v {
		t.Errorf("second Variant(%s, 1) = %s, %v: want another free name", p, v2, err)
	}

	graph := filepath.Join(dir, "graph.json")
	if err := c.WriteGraphReplacing(graph, map[string]string{p: v}); err != nil {
		t.Fatal(err)
	}
	var entries []graphEntry
	if err := json.Unmarshal([]byte(readFile(t, graph)), &entries); err != nil {
		t.Fatal(err)
	}
	refersTo := 0
	for _, e := range entries {
		if e.Path == p {
			t.Errorf("the graph still lists %s", p)
		}
		for _, r := range e.References {
			if r == p {
				t.Errorf("%s still refers to %s", e.Path, p)
			}
			if r == v {
				refersTo++
			}
		}
	}
	if refersTo != c.Referrers()[p] {
		t.Errorf("%d paths refer to the variant, want the %d that referred to %s", refersTo, c.Referrers()[p], p)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
