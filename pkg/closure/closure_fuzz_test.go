package closure_test

import (
	"path"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/closure"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// graphSeeds are exportReferencesGraph documents for the graph fuzzers.
var graphSeeds = []string{
	`[{"path":"/nix/store/aa-app","narHash":"sha256:x","narSize":10,"references":["/nix/store/aa-app","/nix/store/bb-lib"]},{"path":"/nix/store/bb-lib","references":["/nix/store/cc-glibc"]},{"path":"/nix/store/cc-glibc","references":[]}]`,
	`{"closure":[{"path":"/nix/store/aa-app","references":[]}]}`,
	`{"a":[],"b":[]}`,
	`[{"path":"/nix/store/aa-app","references":["/nix/store/zz-missing"]}]`,
	`[{"path":"/nix/store/aa","references":["/nix/store/bb"]},{"path":"/nix/store/bb","references":["/nix/store/aa"]}]`,
	`[{"path":"/nix/store/aa","references":["/nix/store/bb"]},{"path":"/nix/store/aa","references":["/nix/store/cc"]},{"path":"/nix/store/bb"},{"path":"/nix/store/cc"}]`,
	`[{"path":""}]`,
	`[]`,
}

// FuzzParseGraph checks that an accepted graph is complete and its
// reference lists sorted, unique, non-empty and without the path itself.
func FuzzParseGraph(f *testing.F) {
	for _, s := range graphSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := closure.ParseGraph("fuzz.json", data)
		if err != nil {
			return
		}
		if !g.HasReferences {
			t.Fatal("ParseGraph() gave a graph without references")
		}
		for p, n := range g.Nodes {
			if p == "" || n.Path != p {
				t.Fatalf("node %q has path %q", p, n.Path)
			}
			if !slices.IsSorted(n.References) || len(slices.Compact(slices.Clone(n.References))) != len(n.References) {
				t.Fatalf("references of %s not sorted and unique: %q", p, n.References)
			}
			for _, r := range n.References {
				if r == "" || r == p {
					t.Fatalf("references of %s hold %q", p, r)
				}
				if _, ok := g.Nodes[r]; !ok {
					t.Fatalf("reference %s of %s is not in the graph", r, p)
				}
			}
		}
		if ps := g.Paths(); len(ps) != len(g.Nodes) || !slices.IsSorted(ps) {
			t.Fatalf("Paths() = %q for %d nodes", ps, len(g.Nodes))
		}
	})
}

// FuzzPlan plans layers from a fuzzed graph and options and checks the
// plan's promises: at most MaxLayers non-empty layers, every store path of
// the closure at most once at its store location, relocated copies only in
// the last layer, paths sorted within a layer, and the same plan for the
// same input given in another order.
func FuzzPlan(f *testing.F) {
	for i, s := range graphSeeds {
		f.Add([]byte(s), uint8(i%4+1), uint8(i), uint8(i*7))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxLayers, copySel, ignoreSel uint8) {
		g, err := closure.ParseGraph("fuzz.json", data)
		if err != nil || len(g.Nodes) > 512 {
			return
		}
		paths := g.Paths()
		// ParseGraph accepts any non-empty path, but Plan cleans the paths
		// of its options and not those of the graph, so "/." in a graph is
		// never matched by an ignore of "/.". Nix writes only clean
		// absolute store paths; the fuzzer keeps to those (seed
		// unclean-path records the case for ParseGraph to refuse).
		for _, p := range paths {
			if !path.IsAbs(p) || path.Clean(p) != p {
				return
			}
		}
		// The selectors pick paths by bit: bit i of copySel makes path i a
		// copy-to-root path, bit i of ignoreSel an ignored one.
		var copies, ignored []string
		for i, p := range paths {
			if i < 8 && copySel&(1<<i) != 0 {
				copies = append(copies, p)
			}
			if i < 8 && ignoreSel&(1<<i) != 0 {
				ignored = append(ignored, p)
			}
		}
		opts := closure.PlanOptions{MaxLayers: int(maxLayers % 8), CopyToRoot: copies, Ignore: ignored}
		layers, err := closure.Plan(g, opts)
		if err != nil {
			return
		}
		if len(layers) > opts.MaxLayers {
			t.Fatalf("Plan() = %d layers, want at most %d", len(layers), opts.MaxLayers)
		}
		inStore := map[string]bool{}
		for i, l := range layers {
			if len(l) == 0 {
				t.Fatalf("layer %d is empty", i)
			}
			// Store paths are sorted; relocated ones keep the list order,
			// in which later ones win (dockerTools' copying order).
			if !slices.IsSortedFunc(storeOnly(l), func(a, b descriptor.Path) int { return cmpString(a.Path, b.Path) }) {
				t.Fatalf("layer %d's store paths are not sorted: %v", i, l)
			}
			for _, p := range l {
				if _, ok := g.Nodes[p.Path]; !ok {
					t.Fatalf("layer %d holds %s, which is not in the graph", i, p.Path)
				}
				if p.Rewrite != nil {
					if i != len(layers)-1 {
						t.Fatalf("relocated %s is in layer %d, not the last", p.Path, i)
					}
					if !regexp.MustCompile(p.Rewrite.Regex).MatchString(p.Path) {
						t.Fatalf("rewrite %q does not match %s", p.Rewrite.Regex, p.Path)
					}
					continue
				}
				if inStore[p.Path] {
					t.Fatalf("%s is in the store twice", p.Path)
				}
				inStore[p.Path] = true
				if slices.Contains(ignored, p.Path) {
					t.Fatalf("ignored %s is in layer %d", p.Path, i)
				}
			}
		}
		// The ignored paths in another order give the same plan.
		rev := opts
		rev.Ignore = slices.Clone(ignored)
		slices.Reverse(rev.Ignore)
		again, err := closure.Plan(g, rev)
		if err != nil {
			t.Fatalf("Plan() with the ignored paths reversed = %v, first run succeeded", err)
		}
		if diff := cmp.Diff(layers, again); diff != "" {
			t.Fatalf("Plan() depends on the order of the ignored paths (-first +reversed):\n%s", diff)
		}
		// The copy-to-root paths in another order change only the order
		// of the relocated paths, not what goes where.
		rev.CopyToRoot = slices.Clone(copies)
		slices.Reverse(rev.CopyToRoot)
		again, err = closure.Plan(g, rev)
		if err != nil {
			t.Fatalf("Plan() with the copy-to-root paths reversed = %v, first run succeeded", err)
		}
		if len(again) != len(layers) {
			t.Fatalf("Plan() with the copy-to-root paths reversed = %d layers, first %d", len(again), len(layers))
		}
		for i := range layers {
			if diff := cmp.Diff(storeOnly(layers[i]), storeOnly(again[i])); diff != "" {
				t.Fatalf("layer %d's store paths depend on the copy-to-root order (-first +reversed):\n%s", i, diff)
			}
			if diff := cmp.Diff(relocatedSet(layers[i]), relocatedSet(again[i])); diff != "" {
				t.Fatalf("layer %d's relocated paths depend on the copy-to-root order (-first +reversed):\n%s", i, diff)
			}
		}
	})
}

// storeOnly returns the paths of a layer kept at their store location.
func storeOnly(l []descriptor.Path) []descriptor.Path {
	var out []descriptor.Path
	for _, p := range l {
		if p.Rewrite == nil {
			out = append(out, p)
		}
	}
	return out
}

// relocatedSet returns the relocated paths of a layer, as a set.
func relocatedSet(l []descriptor.Path) map[string]bool {
	out := map[string]bool{}
	for _, p := range l {
		if p.Rewrite != nil {
			out[p.Path] = true
		}
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// FuzzParsePerms checks that every accepted perms entry names a path,
// has a regex that compiles and modes that are octal 0000–7777.
func FuzzParsePerms(f *testing.F) {
	for _, s := range []string{
		`[{"path":"/nix/store/aa-root","regex":"^/nix/store/aa-root/home/app(/.*)?$","mode":"0700","uid":1000,"gid":1000,"uname":"app","gname":"app"}]`,
		`[{"path":"/nix/store/aa-root","regex":".*","orMode":"4000"}]`,
		`[{"path":"/nix/store/aa-root","regex":"("}]`,
		`[{"path":"/nix/store/aa-root","regex":"x","mode":"0999"}]`,
		`[{"regex":"x"}]`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := closure.ParsePerms("perms.json", data)
		if err != nil {
			return
		}
		for i, s := range specs {
			if s.Path == "" {
				t.Fatalf("entry %d has no path", i)
			}
			if _, err := regexp.Compile(s.Regex); err != nil || s.Regex == "" {
				t.Fatalf("entry %d: regex %q accepted: %v", i, s.Regex, err)
			}
			for _, m := range []string{s.Mode, s.OrMode} {
				if m == "" {
					continue
				}
				if v, err := strconv.ParseUint(m, 8, 32); err != nil || v > 0o7777 {
					t.Fatalf("entry %d: mode %q accepted", i, m)
				}
			}
		}
	})
}
