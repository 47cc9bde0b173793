package closure

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// PermSpec attaches a perms rule to the store path whose entries it applies
// to. In JSON it is the rule's fields plus "path":
// {"path": "/nix/store/…", "regex": "…", "mode": "0700", "uid": 1000, …}.
type PermSpec struct {
	Path string `json:"path"`
	descriptor.Perm
}

// ParsePerms parses a JSON array of PermSpec (the --perms file); name is
// used in errors.
func ParsePerms(name string, data []byte) ([]PermSpec, error) {
	var specs []PermSpec
	if err := json.Unmarshal(data, &specs); err != nil {
		return nil, fmt.Errorf("parsing perms %s: %w (expected [{\"path\": \"/nix/store/…\", \"regex\": \"…\", \"mode\": \"0700\"}, …])", name, err)
	}
	for i, s := range specs {
		if s.Path == "" {
			return nil, fmt.Errorf("perms %s: entry %d has no \"path\": name the store path the rule applies to", name, i)
		}
		if err := checkPerm(s); err != nil {
			return nil, fmt.Errorf("perms %s: entry %d: %w", name, i, err)
		}
	}
	return specs, nil
}

func checkPerm(s PermSpec) error {
	if s.Regex == "" {
		return fmt.Errorf("perms for %s: empty regex: give the regex of the entries to change", s.Path)
	}
	if _, err := regexp.Compile(s.Regex); err != nil {
		return fmt.Errorf("perms for %s: regex %q: %w", s.Path, s.Regex, err)
	}
	for _, m := range []struct{ field, v string }{{"mode", s.Mode}, {"orMode", s.OrMode}} {
		if m.v == "" {
			continue
		}
		if v, err := strconv.ParseUint(m.v, 8, 32); err != nil || v > 0o7777 {
			return fmt.Errorf("perms for %s: %s %q: give an octal mode between 0000 and 7777, such as 0755", s.Path, m.field, m.v)
		}
	}
	return nil
}

// PlanOptions says which paths go into the layers and how.
type PlanOptions struct {
	// MaxLayers is the most layers to make; at least 1.
	MaxLayers int
	// Roots are the requested paths; their closure in the graph goes in
	// (for a graph without references, exactly these paths). Empty: every
	// path of the graph.
	Roots []string
	// CopyToRoot paths have their content relocated to "/" (a Rewrite of
	// the store path prefix to ""), in the last layer. A path also listed in
	// Roots is included once, relocated; it stays in the store as well when
	// an included path refers to it, the path itself included (a wrapper
	// that execs a file of its own store path), or it is in KeepInStore.
	// Their references go in. Their order is the order they merge in: a
	// later path's file replaces an earlier one's (see pkg/tarstream); a
	// path listed twice merges where it was listed last.
	CopyToRoot []string
	// KeepInStore are CopyToRoot paths that go in at their store location
	// as well, like any root (for example because the image config names
	// them under /nix/store). Their relocated copy is still written.
	KeepInStore []string
	// Exclude holds store paths already in lower layers; they are left
	// out (their store copies only: relocated CopyToRoot content is still
	// written). See layer.StorePaths.
	Exclude map[string]bool
	// Ignore lists paths left out entirely (not their references).
	Ignore []string
	// OmitStorePaths leaves out every path at its store location: only the
	// relocated CopyToRoot content goes in (dockerTools'
	// includeStorePaths = false, for images run with the store mounted).
	OmitStorePaths bool
	// Perms are attached to the descriptor.Path of their path (to both its
	// store and relocated copies).
	Perms []PermSpec
	// Log receives notes: a copy-to-root path that also stays in the store,
	// perms for a path that is excluded. Default: discarded.
	Log logrus.FieldLogger
}

// Plan splits the closure into layers the way nixpkgs' buildLayeredImage
// does. Each path's popularity is the number of other closure paths that
// depend on it, directly or not. Paths are ordered by popularity, most
// popular first, ties by path; the MaxLayers-1 most popular each get a layer
// of their own, base first, and all the others, with the CopyToRoot content,
// share the last layer. Paths inside a layer are sorted, except that the
// relocated CopyToRoot paths among them are in merge order. Apart from
// that order, the result does not depend on the order of the inputs.
// Nothing to put in gives no layers.
func Plan(g *Graph, opts PlanOptions) ([][]descriptor.Path, error) {
	if opts.MaxLayers < 1 {
		return nil, fmt.Errorf("max layers is %d: it must be at least 1", opts.MaxLayers)
	}
	roots, err := cleanPaths("path", opts.Roots)
	if err != nil {
		return nil, err
	}
	copies, err := mergeOrder(opts.CopyToRoot)
	if err != nil {
		return nil, err
	}
	ignored, err := cleanPaths("ignored path", opts.Ignore)
	if err != nil {
		return nil, err
	}
	kept, err := cleanPaths("kept store path", opts.KeepInStore)
	if err != nil {
		return nil, err
	}
	isCopy, isIgnored, isKept := toSet(copies), toSet(ignored), toSet(kept)
	log := logs.Or(opts.Log)

	if len(roots) == 0 {
		roots = g.Paths()
	}
	storeRoots := append([]string(nil), kept...)
	for _, r := range roots {
		if !isCopy[r] {
			storeRoots = append(storeRoots, r)
		}
	}
	var closure map[string]bool
	if g.HasReferences {
		for _, c := range copies {
			n, ok := g.Nodes[c]
			if !ok {
				return nil, fmt.Errorf("copy-to-root path %s not in closure graph %s: export the reference graph of every path you list", c, g.Name)
			}
			storeRoots = append(storeRoots, n.References...)
			if n.SelfReference {
				storeRoots = append(storeRoots, c)
			}
		}
		if closure, err = g.closureSet(storeRoots); err != nil {
			return nil, err
		}
	} else {
		closure = toSet(storeRoots)
	}
	for _, c := range copies {
		if closure[c] && !isKept[c] && !opts.OmitStorePaths {
			log.Debugf("copy-to-root path %s is also referenced by the closure (or by itself): it goes in the store too", c)
		}
	}

	pop, err := popularity(g, closure)
	if err != nil {
		return nil, err
	}
	candidates := make([]string, 0, len(closure))
	for p := range closure {
		if !isIgnored[p] && !opts.Exclude[p] && !opts.OmitStorePaths {
			candidates = append(candidates, p)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if pop[a] != pop[b] {
			return pop[a] > pop[b]
		}
		return a < b
	})

	var layers [][]descriptor.Path
	singles := min(opts.MaxLayers-1, len(candidates))
	for _, p := range candidates[:singles] {
		layers = append(layers, []descriptor.Path{{Path: p}})
	}
	var last []descriptor.Path
	for _, p := range candidates[singles:] {
		last = append(last, descriptor.Path{Path: p})
	}
	var relocated []descriptor.Path
	for _, c := range copies {
		if isIgnored[c] {
			continue
		}
		relocated = append(relocated, descriptor.Path{Path: c, Rewrite: &descriptor.Rewrite{Regex: "^" + regexp.QuoteMeta(c), Repl: ""}})
	}
	last = append(last, relocated...)
	sort.SliceStable(last, func(i, j int) bool {
		if last[i].Path != last[j].Path {
			return last[i].Path < last[j].Path
		}
		return last[i].Rewrite == nil && last[j].Rewrite != nil
	})
	// The relocated paths take the places the sort gave them (so a layer
	// with one of them is laid out as before merging existed), in merge
	// order.
	next := 0
	for i := range last {
		if last[i].Rewrite != nil {
			last[i] = relocated[next]
			next++
		}
	}
	if len(last) > 0 {
		layers = append(layers, last)
	}

	if err := attachPerms(layers, opts.Perms, closure, isCopy, log); err != nil {
		return nil, err
	}
	return layers, nil
}

// attachPerms adds each rule to the paths it names.
func attachPerms(layers [][]descriptor.Path, perms []PermSpec, closure, isCopy map[string]bool, log logrus.FieldLogger) error {
	for _, spec := range perms {
		if err := checkPerm(spec); err != nil {
			return err
		}
		p := path.Clean(spec.Path)
		found := false
		for _, layer := range layers {
			for i := range layer {
				if layer[i].Path == p {
					layer[i].Perms = append(layer[i].Perms, spec.Perm)
					found = true
				}
			}
		}
		switch {
		case found:
		case closure[p] || isCopy[p]:
			log.Warnf("perms for %s not applied: the path is excluded or ignored from these layers", p)
		default:
			return fmt.Errorf("perms for %s: the path is not among the layer's paths or their closure: list it, or fix the perms \"path\"", p)
		}
	}
	return nil
}

// popularity returns, for each path of set, how many other paths of set
// depend on it directly or transitively. It computes every path's
// dependencies within set as a bit set, in dependency order.
func popularity(g *Graph, set map[string]bool) (map[string]int, error) {
	paths := make([]string, 0, len(set))
	for p := range set {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	pop := make(map[string]int, len(paths))
	if !g.HasReferences {
		for _, p := range paths {
			pop[p] = 0
		}
		return pop, nil
	}
	index := make(map[string]int, len(paths))
	for i, p := range paths {
		index[p] = i
	}
	words := (len(paths) + 63) / 64
	deps := make([][]uint64, len(paths))
	const (
		unvisited = iota
		inProgress
		done
	)
	state := make([]int, len(paths))
	// Depth-first, iteratively: a node's set is complete once all its
	// references' sets are.
	type frame struct{ node, next int }
	for start := range paths {
		if state[start] != unvisited {
			continue
		}
		stack := []frame{{start, 0}}
		state[start] = inProgress
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			refs := g.Nodes[paths[top.node]].References
			if top.next < len(refs) {
				r, ok := index[refs[top.next]]
				top.next++
				if !ok {
					continue
				}
				switch state[r] {
				case unvisited:
					state[r] = inProgress
					stack = append(stack, frame{r, 0})
				case inProgress:
					return nil, fmt.Errorf("closure graph %s: reference cycle through %s and %s", g.Name, paths[top.node], paths[r])
				}
				continue
			}
			bs := make([]uint64, words)
			for _, ref := range refs {
				if r, ok := index[ref]; ok {
					bs[r/64] |= 1 << (r % 64)
					for w, v := range deps[r] {
						bs[w] |= v
					}
				}
			}
			deps[top.node] = bs
			state[top.node] = done
			stack = stack[:len(stack)-1]
		}
	}
	counts := make([]int, len(paths))
	for _, bs := range deps {
		for w, v := range bs {
			for v != 0 {
				counts[w*64+bits.TrailingZeros64(v)]++
				v &= v - 1
			}
		}
	}
	for i, p := range paths {
		pop[p] = counts[i]
	}
	return pop, nil
}

func cleanPaths(what string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, p := range in {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%s %q: give an absolute store path", what, p)
		}
		p = path.Clean(p)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

// mergeOrder cleans copy-to-root paths and keeps their order, each path
// where it was listed last (copying a path again merges it again there).
func mergeOrder(in []string) ([]string, error) {
	last := map[string]int{}
	clean := make([]string, len(in))
	for i, p := range in {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("copy-to-root path %q: give an absolute store path", p)
		}
		clean[i] = path.Clean(p)
		last[clean[i]] = i
	}
	out := make([]string, 0, len(last))
	for i, p := range clean {
		if last[p] == i {
			out = append(out, p)
		}
	}
	return out, nil
}

func toSet(paths []string) map[string]bool {
	set := make(map[string]bool, len(paths))
	for _, p := range paths {
		set[p] = true
	}
	return set
}
