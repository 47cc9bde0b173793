package closure

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// Node is one store path of a reference graph.
type Node struct {
	// Path is the store path.
	Path string
	// NarHash and NarSize are Nix's hash and size of the path's NAR
	// serialisation (informational; empty when unknown).
	NarHash string
	NarSize int64
	// References are the store paths this one refers to, sorted, without
	// the path itself.
	References []string
	// SelfReference is true when the path refers to itself (Nix lists it
	// among its own references), as a makeWrapper wrapper that execs a
	// hidden file of its own store path does.
	SelfReference bool
}

// Graph is a set of store paths and, when known, their references.
type Graph struct {
	// Name says where the graph came from, for error messages.
	Name string
	// Nodes maps each store path to its node.
	Nodes map[string]*Node
	// HasReferences is false for a graph made by FromPaths: references are
	// unknown, so a closure is just the paths themselves.
	HasReferences bool
}

// graphEntry is one element of Nix's exportReferencesGraph JSON.
type graphEntry struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
}

// LoadGraph reads a reference graph file (see ParseGraph).
func LoadGraph(path string) (*Graph, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading closure graph: %w", err)
	}
	return ParseGraph(path, data)
}

// ParseGraph parses Nix's exportReferencesGraph JSON, as a derivation with
// __structuredAttrs finds it in .attrs.json: an array of objects
// {"path", "narHash", "narSize", "references": […]} (other keys ignored).
// It also accepts an object with exactly one key whose value is that array.
// Every referenced path must itself be in the graph. name is used in errors.
func ParseGraph(name string, data []byte) (*Graph, error) {
	return ParseGraphKey(name, data, "")
}

// ParseGraphKey is ParseGraph for a JSON object holding the graph under key
// among other keys, such as a whole .attrs.json. An empty key means
// ParseGraph's rules.
func ParseGraphKey(name string, data []byte, key string) (*Graph, error) {
	trimmed := bytes.TrimSpace(data)
	raw := json.RawMessage(trimmed)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &obj); err != nil {
			return nil, fmt.Errorf("parsing closure graph %s: %w", name, err)
		}
		switch {
		case key != "":
			v, ok := obj[key]
			if !ok {
				return nil, fmt.Errorf("closure graph %s: no key %q: list it in the derivation's exportReferencesGraph", name, key)
			}
			raw = v
		case len(obj) == 1:
			for _, v := range obj {
				raw = v
			}
		default:
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, fmt.Errorf("closure graph %s: an object with keys %s; give a file holding just the exportReferencesGraph array (or one key), or name the key", name, strings.Join(keys, ", "))
		}
	} else if key != "" {
		return nil, fmt.Errorf("closure graph %s: expected a JSON object holding key %q", name, key)
	}
	var entries []graphEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("parsing closure graph %s: %w (expected Nix's exportReferencesGraph JSON: [{\"path\": …, \"references\": […]}, …])", name, err)
	}
	g := &Graph{Name: name, Nodes: make(map[string]*Node, len(entries)), HasReferences: true}
	for i, e := range entries {
		if e.Path == "" {
			return nil, fmt.Errorf("closure graph %s: entry %d has no \"path\"", name, i)
		}
		n := &Node{Path: e.Path, NarHash: e.NarHash, NarSize: e.NarSize}
		if old, ok := g.Nodes[e.Path]; ok {
			// Nix lists each path once; tolerate repeats that agree.
			n = old
		}
		n.References = mergeRefs(n.References, e.References, e.Path)
		n.SelfReference = n.SelfReference || slices.Contains(e.References, e.Path)
		g.Nodes[e.Path] = n
	}
	if err := g.checkComplete(); err != nil {
		return nil, err
	}
	return g, nil
}

// mergeRefs returns the sorted union of a and b without self.
func mergeRefs(a, b []string, self string) []string {
	set := make(map[string]bool, len(a)+len(b))
	for _, r := range append(append([]string(nil), a...), b...) {
		if r != self && r != "" {
			set[r] = true
		}
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// checkComplete reports references to paths that are not in the graph.
func (g *Graph) checkComplete() error {
	missing := map[string][]string{}
	for _, n := range g.Nodes {
		for _, r := range n.References {
			if _, ok := g.Nodes[r]; !ok {
				missing[r] = append(missing[r], n.Path)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	paths := make([]string, 0, len(missing))
	for p := range missing {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	msgs := make([]string, 0, len(paths))
	for _, p := range paths {
		by := missing[p]
		sort.Strings(by)
		msgs = append(msgs, fmt.Sprintf("%s (referenced by %s)", p, strings.Join(by, ", ")))
	}
	return fmt.Errorf("closure graph %s is incomplete: missing %s; export the whole closure (exportReferencesGraph of the roots)", g.Name, strings.Join(msgs, "; "))
}

// FromPaths returns a graph of paths with no known references: Plan then
// puts exactly these paths in layers.
func FromPaths(paths []string) *Graph {
	g := &Graph{Name: "command-line paths", Nodes: make(map[string]*Node, len(paths))}
	for _, p := range paths {
		g.Nodes[p] = &Node{Path: p}
	}
	return g
}

// Merge returns the union of graphs, for derivations that export one graph
// per root. A path listed in several graphs gets the union of its references.
func Merge(graphs ...*Graph) (*Graph, error) {
	out := &Graph{Nodes: map[string]*Node{}, HasReferences: true}
	var names []string
	for _, g := range graphs {
		names = append(names, g.Name)
		out.HasReferences = out.HasReferences && g.HasReferences
		for p, n := range g.Nodes {
			m, ok := out.Nodes[p]
			if !ok {
				m = &Node{Path: p, NarHash: n.NarHash, NarSize: n.NarSize}
				out.Nodes[p] = m
			}
			m.References = mergeRefs(m.References, n.References, p)
			m.SelfReference = m.SelfReference || n.SelfReference
		}
	}
	out.Name = strings.Join(names, ", ")
	if len(graphs) == 0 {
		out.HasReferences = false
	}
	if err := out.checkComplete(); err != nil {
		return nil, err
	}
	return out, nil
}

// Paths returns every path of the graph, sorted.
func (g *Graph) Paths() []string {
	out := make([]string, 0, len(g.Nodes))
	for p := range g.Nodes {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Closure returns the paths reachable from roots by references, roots
// included, sorted. A root that is not in the graph is an error naming it.
func (g *Graph) Closure(roots []string) ([]string, error) {
	set, err := g.closureSet(roots)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

func (g *Graph) closureSet(roots []string) (map[string]bool, error) {
	set := make(map[string]bool, len(g.Nodes))
	var missing []string
	stack := make([]string, 0, len(roots))
	for _, r := range roots {
		if _, ok := g.Nodes[r]; !ok {
			missing = append(missing, r)
			continue
		}
		stack = append(stack, r)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%s not in closure graph %s: export the reference graph of every path you list", strings.Join(missing, ", "), g.Name)
	}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if set[p] {
			continue
		}
		set[p] = true
		stack = append(stack, g.Nodes[p].References...)
	}
	return set, nil
}
