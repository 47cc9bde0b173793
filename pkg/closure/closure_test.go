package closure

import (
	"encoding/json"
	"math/rand"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// Store paths whose hash order differs from their name order, so ties
// broken by path are visible.
const (
	glibc = "/nix/store/zz11-glibc"
	lib1  = "/nix/store/cc22-lib1"
	lib2  = "/nix/store/bb33-lib2"
	app   = "/nix/store/dd44-app"
	tool  = "/nix/store/aa55-tool"
)

// testGraph is:
//
//	app -> lib1 -> glibc
//	app -> lib2 -> glibc
//	tool -> glibc
//
// Popularity: glibc 4 (lib1, lib2, app, tool), lib1 1, lib2 1, app 0, tool 0.
type entry struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
}

func testEntries() []entry {
	return []entry{
		{Path: glibc, NarHash: "sha256:1", NarSize: 10, References: []string{glibc}},
		{Path: lib1, References: []string{glibc}},
		{Path: lib2, References: []string{glibc, lib2}},
		{Path: app, References: []string{lib1, lib2}},
		{Path: tool, References: []string{glibc}},
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func testGraph(t *testing.T) *Graph {
	t.Helper()
	g, err := ParseGraph("test.json", mustJSON(t, testEntries()))
	if err != nil {
		t.Fatalf("ParseGraph() error = %v", err)
	}
	return g
}

func ps(paths ...string) []descriptor.Path {
	out := make([]descriptor.Path, 0, len(paths))
	for _, p := range paths {
		out = append(out, descriptor.Path{Path: p})
	}
	return out
}

func moved(p string) descriptor.Path {
	return descriptor.Path{Path: p, Rewrite: &descriptor.Rewrite{Regex: "^" + regexp.QuoteMeta(p), Repl: ""}}
}

// TestSelfReference: a path that lists itself among its references keeps
// that, though References leaves it out; Merge keeps it too.
func TestSelfReference(t *testing.T) {
	g := testGraph(t)
	for p, want := range map[string]bool{lib2: true, glibc: true, lib1: false, app: false} {
		if got := g.Nodes[p].SelfReference; got != want {
			t.Errorf("%s: SelfReference = %v, want %v", p, got, want)
		}
		if got := g.Nodes[p].References; slices.Contains(got, p) {
			t.Errorf("%s: References %v hold the path itself", p, got)
		}
	}
	m, err := Merge(FromPaths([]string{lib2}), g)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Nodes[lib2].SelfReference {
		t.Errorf("Merge() lost the self-reference of %s", lib2)
	}
}

func TestParseGraph(t *testing.T) {
	arr := string(mustJSON(t, testEntries()))
	tests := []struct {
		name    string
		data    string
		key     string
		wantErr string
	}{
		{name: "array", data: arr},
		{name: "single key object", data: `{"closure": ` + arr + `}`},
		{name: "named key", data: `{"name": "x", "closure": ` + arr + `, "other": 1}`, key: "closure"},
		{name: "several keys", data: `{"a": ` + arr + `, "b": []}`, wantErr: "keys a, b"},
		{name: "missing key", data: `{"a": ` + arr + `}`, key: "closure", wantErr: `no key "closure"`},
		{name: "malformed", data: `[{"path": `, wantErr: "test.json"},
		{name: "not a graph", data: `{"closure": 3}`, wantErr: "exportReferencesGraph"},
		{name: "entry without path", data: `[{"references": []}]`, wantErr: "entry 0"},
		{
			name:    "missing reference",
			data:    `[{"path": "/nix/store/a", "references": ["/nix/store/b", "/nix/store/c"]}, {"path": "/nix/store/c", "references": []}]`,
			wantErr: "missing /nix/store/b (referenced by /nix/store/a)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := ParseGraphKey("test.json", []byte(tt.data), tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "test.json") {
					t.Fatalf("ParseGraphKey() error = %v, want one naming test.json and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGraphKey() error = %v", err)
			}
			if diff := cmp.Diff([]string{tool, lib2, lib1, app, glibc}, g.Paths()); diff != "" {
				t.Errorf("Paths() (-want +got):\n%s", diff)
			}
			if got := g.Nodes[glibc]; got.NarHash != "sha256:1" || got.NarSize != 10 || len(got.References) != 0 {
				t.Errorf("glibc node = %+v, want its hash, size and no self-reference", got)
			}
			if diff := cmp.Diff([]string{lib2, lib1}, g.Nodes[app].References); diff != "" {
				t.Errorf("app references (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		graph func(t *testing.T) *Graph
		opts  PlanOptions
		want  [][]descriptor.Path
	}{
		{
			name: "one layer",
			opts: PlanOptions{MaxLayers: 1},
			want: [][]descriptor.Path{ps(tool, lib2, lib1, app, glibc)},
		},
		{
			name: "popularity cut",
			opts: PlanOptions{MaxLayers: 3, Roots: []string{app, tool}},
			want: [][]descriptor.Path{ps(glibc), ps(lib2), ps(tool, lib1, app)},
		},
		{
			name: "more layers than paths",
			opts: PlanOptions{MaxLayers: 100},
			want: [][]descriptor.Path{ps(glibc), ps(lib2), ps(lib1), ps(tool), ps(app)},
		},
		{
			name: "exactly as many layers as paths",
			opts: PlanOptions{MaxLayers: 5},
			want: [][]descriptor.Path{ps(glibc), ps(lib2), ps(lib1), ps(tool), ps(app)},
		},
		{
			name: "closure of a root",
			opts: PlanOptions{MaxLayers: 10, Roots: []string{tool + "/"}},
			want: [][]descriptor.Path{ps(glibc), ps(tool)},
		},
		{
			name: "exclusion keeps others' popularity",
			opts: PlanOptions{MaxLayers: 2, Exclude: map[string]bool{glibc: true}},
			want: [][]descriptor.Path{ps(lib2), ps(tool, lib1, app)},
		},
		{
			name: "ignore",
			opts: PlanOptions{MaxLayers: 1, Ignore: []string{lib2}},
			want: [][]descriptor.Path{ps(tool, lib1, app, glibc)},
		},
		{
			name: "copy to root once",
			opts: PlanOptions{MaxLayers: 2, Roots: []string{app, tool}, CopyToRoot: []string{app}},
			// app's references stay; app itself is only relocated.
			want: [][]descriptor.Path{ps(glibc), {{Path: tool}, {Path: lib2}, {Path: lib1}, moved(app)}},
		},
		{
			name: "copy to root of a referenced path",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{app}, CopyToRoot: []string{lib1}},
			want: [][]descriptor.Path{{{Path: lib2}, {Path: lib1}, moved(lib1), {Path: app}, {Path: glibc}}},
		},
		{
			name: "copy to root of a path that refers to itself",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{lib2}, CopyToRoot: []string{lib2}},
			// Like a makeWrapper wrapper: lib2 names its own store path.
			want: [][]descriptor.Path{{{Path: lib2}, moved(lib2), {Path: glibc}}},
		},
		{
			name: "copy to root in merge order",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool, lib1}, CopyToRoot: []string{lib1, tool}},
			want: [][]descriptor.Path{{moved(lib1), moved(tool), {Path: glibc}}},
		},
		{
			name: "copy to root listed twice merges where listed last",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool, lib1}, CopyToRoot: []string{tool, lib1, tool}},
			want: [][]descriptor.Path{{moved(lib1), moved(tool), {Path: glibc}}},
		},
		{
			name: "copy to root in the other order",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool, lib1}, CopyToRoot: []string{lib1, tool, lib1}},
			want: [][]descriptor.Path{{moved(tool), moved(lib1), {Path: glibc}}},
		},
		{
			name: "store paths omitted",
			opts: PlanOptions{MaxLayers: 3, Roots: []string{app}, CopyToRoot: []string{lib2, lib1}, KeepInStore: []string{lib1}, OmitStorePaths: true},
			want: [][]descriptor.Path{{moved(lib2), moved(lib1)}},
		},
		{
			name: "copy to root is not excluded",
			opts: PlanOptions{MaxLayers: 3, Roots: []string{tool}, CopyToRoot: []string{tool}, Exclude: map[string]bool{glibc: true, tool: true}},
			want: [][]descriptor.Path{{moved(tool)}},
		},
		{
			name: "copy to root kept in the store",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool}, CopyToRoot: []string{tool}, KeepInStore: []string{tool}},
			want: [][]descriptor.Path{{{Path: tool}, moved(tool), {Path: glibc}}},
		},
		{
			name: "copy to root kept in the store, with perms on both copies",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool}, CopyToRoot: []string{tool}, KeepInStore: []string{tool}, Perms: []PermSpec{
				{Path: tool, Perm: descriptor.Perm{Regex: ".*", Mode: "0700"}},
			}},
			want: func() [][]descriptor.Path {
				mode := []descriptor.Perm{{Regex: ".*", Mode: "0700"}}
				p := moved(tool)
				p.Perms = mode
				return [][]descriptor.Path{{{Path: tool, Perms: mode}, p, {Path: glibc}}}
			}(),
		},
		{
			name: "kept path already in a layer below",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool}, CopyToRoot: []string{tool}, KeepInStore: []string{tool}, Exclude: map[string]bool{tool: true}},
			want: [][]descriptor.Path{{moved(tool), {Path: glibc}}},
		},
		{
			name: "kept path that is not copied to root",
			opts: PlanOptions{MaxLayers: 1, Roots: []string{tool}, KeepInStore: []string{tool}},
			want: [][]descriptor.Path{ps(tool, glibc)},
		},
		{
			name: "everything excluded",
			opts: PlanOptions{MaxLayers: 3, Roots: []string{tool}, Exclude: map[string]bool{glibc: true, tool: true}},
			want: nil,
		},
		{
			name:  "paths without references",
			graph: func(*testing.T) *Graph { return FromPaths([]string{app, glibc, tool}) },
			opts:  PlanOptions{MaxLayers: 2, CopyToRoot: []string{lib1}},
			want:  [][]descriptor.Path{ps(tool), {moved(lib1), {Path: app}, {Path: glibc}}},
		},
		{
			name:  "roots without references",
			graph: func(*testing.T) *Graph { return FromPaths(nil) },
			opts:  PlanOptions{MaxLayers: 1, Roots: []string{glibc, app, app}},
			want:  [][]descriptor.Path{ps(app, glibc)},
		},
		{
			name: "perms",
			opts: PlanOptions{MaxLayers: 2, Roots: []string{tool}, CopyToRoot: []string{tool}, Perms: []PermSpec{
				{Path: tool, Perm: descriptor.Perm{Regex: "/bin", Mode: "0700"}},
				{Path: glibc, Perm: descriptor.Perm{Regex: ".*", OrMode: "0200"}},
			}},
			want: [][]descriptor.Path{
				{{Path: glibc, Perms: []descriptor.Perm{{Regex: ".*", OrMode: "0200"}}}},
				{func() descriptor.Path {
					p := moved(tool)
					p.Perms = []descriptor.Perm{{Regex: "/bin", Mode: "0700"}}
					return p
				}()},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			graph := testGraph
			if tt.graph != nil {
				graph = tt.graph
			}
			got, err := Plan(graph(t), tt.opts)
			if err != nil {
				t.Fatalf("Plan() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Plan() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    PlanOptions
		wantErr string
	}{
		{"zero layers", PlanOptions{MaxLayers: 0}, "at least 1"},
		{"negative layers", PlanOptions{MaxLayers: -1}, "at least 1"},
		{"unknown root", PlanOptions{MaxLayers: 1, Roots: []string{"/nix/store/xx-nope"}}, "/nix/store/xx-nope not in closure graph test.json"},
		{"unknown copy", PlanOptions{MaxLayers: 1, CopyToRoot: []string{"/nix/store/xx-nope"}}, "/nix/store/xx-nope"},
		{"relative root", PlanOptions{MaxLayers: 1, Roots: []string{"result"}}, `"result"`},
		{"perms of unknown path", PlanOptions{MaxLayers: 1, Roots: []string{tool}, Perms: []PermSpec{{Path: app, Perm: descriptor.Perm{Regex: "x"}}}}, "perms for " + app},
		{"bad perms regex", PlanOptions{MaxLayers: 1, Perms: []PermSpec{{Path: app, Perm: descriptor.Perm{Regex: "("}}}}, "regex"},
		{"bad perms mode", PlanOptions{MaxLayers: 1, Perms: []PermSpec{{Path: app, Perm: descriptor.Perm{Regex: "x", Mode: "rwx"}}}}, `mode "rwx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(testGraph(t), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Plan() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPlanCycle(t *testing.T) {
	g, err := ParseGraph("cycle.json", []byte(`[{"path":"/nix/store/a","references":["/nix/store/b"]},{"path":"/nix/store/b","references":["/nix/store/a"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Plan(g, PlanOptions{MaxLayers: 2}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("Plan() error = %v, want a reference cycle error", err)
	}
}

// TestPlanDeterministic shuffles the graph's entries and the roots and
// checks the plan does not change. (The order of CopyToRoot is the merge
// order, so it is kept: see TestPlanCopyOrder.)
func TestPlanDeterministic(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	opts := func() PlanOptions {
		roots := []string{app, tool, lib2}
		rng.Shuffle(len(roots), func(i, j int) { roots[i], roots[j] = roots[j], roots[i] })
		return PlanOptions{MaxLayers: 3, Roots: roots, CopyToRoot: []string{tool, lib2}}
	}
	want, err := Plan(testGraph(t), opts())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		entries := testEntries()
		rng.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
		for _, e := range entries {
			rng.Shuffle(len(e.References), func(i, j int) { e.References[i], e.References[j] = e.References[j], e.References[i] })
		}
		g, err := ParseGraph("shuffled", mustJSON(t, entries))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Plan(g, opts())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Plan() changed with input order (-first +now):\n%s", diff)
		}
	}
}

// TestPopularityLarge checks the bit-set popularity against a direct count
// on a generated graph wider than one 64-bit word.
func TestPopularityLarge(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	const n = 300
	names := make([]string, n)
	for i := range names {
		names[i] = "/nix/store/" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "-p"
	}
	var entries []entry
	for i := range names {
		e := entry{Path: names[i], References: []string{}}
		// Refer only to later paths: no cycles.
		for j := i + 1; j < n; j++ {
			if rng.Intn(40) == 0 {
				e.References = append(e.References, names[j])
			}
		}
		entries = append(entries, e)
	}
	g, err := ParseGraph("large", mustJSON(t, entries))
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, p := range names {
		all[p] = true
	}
	got, err := popularity(g, all)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, q := range names {
		c, err := g.Closure([]string{q})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range c {
			if x != q {
				want[x]++
			}
		}
	}
	for _, p := range names {
		if got[p] != want[p] {
			t.Fatalf("popularity(%s) = %d, want %d", p, got[p], want[p])
		}
	}
}

func TestMerge(t *testing.T) {
	a, err := ParseGraph("a", []byte(`[{"path":"/nix/store/a","references":["/nix/store/c"]},{"path":"/nix/store/c","references":[]}]`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseGraph("b", []byte(`[{"path":"/nix/store/b","references":["/nix/store/c"]},{"path":"/nix/store/c","references":[]}]`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatalf("Merge() error = %v", err)
	}
	if diff := cmp.Diff([]string{"/nix/store/a", "/nix/store/b", "/nix/store/c"}, m.Paths()); diff != "" {
		t.Errorf("Merge().Paths() (-want +got):\n%s", diff)
	}
	if !m.HasReferences {
		t.Errorf("Merge().HasReferences = false")
	}
}

func TestParsePerms(t *testing.T) {
	got, err := ParsePerms("perms.json", []byte(`[{"path":"/nix/store/a","regex":"/etc","mode":"0700","uid":1000,"gid":100,"uname":"u","gname":"g"}]`))
	if err != nil {
		t.Fatalf("ParsePerms() error = %v", err)
	}
	uid, gid, uname, gname := 1000, 100, "u", "g"
	want := []PermSpec{{Path: "/nix/store/a", Perm: descriptor.Perm{Regex: "/etc", Mode: "0700", UID: &uid, GID: &gid, Uname: &uname, Gname: &gname}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParsePerms() (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`[{"regex":"x"}]`, `[{"path":"/a","regex":"("}]`, `{"path":"/a"}`} {
		if _, err := ParsePerms("perms.json", []byte(bad)); err == nil || !strings.Contains(err.Error(), "perms.json") {
			t.Errorf("ParsePerms(%s) error = %v, want one naming perms.json", bad, err)
		}
	}
}
