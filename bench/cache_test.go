package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// rebuildTarget is issue 11's target: a rebuild with the digest cache after
// a one-path change in a small layer takes at most this many times the
// `--compression none` build of the same closure. Unlike the other
// targets, missing it fails the benchmark.
const rebuildTarget = 1.5

// verifyBelow is layer.DefaultVerifyBelow: layers whose tar is smaller are
// compressed on every build, cache or not.
const verifyBelow = 1 << 20

// cacheStatsRE reads the summary `nixoci layers --cache` prints on stderr.
var cacheStatsRE = regexp.MustCompile(`: (\d+) layers: (\d+) from the cache, (\d+) compressed`)

// cacheStats is that summary.
type cacheStats struct{ layers, hits, compressed int }

func parseCacheStats(b *testing.B, stderr string) cacheStats {
	b.Helper()
	m := cacheStatsRE.FindStringSubmatch(stderr)
	if m == nil {
		b.Fatalf("nixoci layers --cache printed no summary:\n%s", tail(stderr, 2000))
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return cacheStats{n(1), n(2), n(3)}
}

// cacheBench is the state of benchCache.
type cacheBench struct {
	*fixture
	cache string // the digest cache directory
	// small is a store path with a layer of its own in the 20-layer plan
	// (the smallest such layer), app a path in the last, largest layer
	// that no other path refers to (an application, as a dev changes it).
	small, app           string
	smallSize, restSize  int64
	layers, smallLayers  int // layers in the plan, and those under verifyBelow
	sha256sum, coldBuild float64
	variants             int
}

// benchCache measures the dev cycle with the digest cache (issue 11): a
// cold build, a warm rebuild, rebuilds after a one-path change in a small
// layer (against the --compression none build of the same closure: the
// target) and in the largest layer, counting compressions from the cache's
// summary; then, with a registry, the dev cycle (rebuild, image, push) for
// one layers document, for dependencies in a separate buildLayer-shaped
// document, and with --compression none.
func (f *fixture) benchCache(b *testing.B) {
	c := &cacheBench{fixture: f, cache: filepath.Join(f.dir, "digest-cache")}
	c.plan(b)
	c.sha256sum = f.baseline(b)

	// A cold build fills the cache: every layer compressed.
	cold := filepath.Join(f.dir, "cache-cold.json")
	o, st := c.cached(b, f.graph, cold)
	if st.compressed != c.layers || st.hits != 0 {
		b.Fatalf("cold build with an empty cache: %+v, want all %d layers compressed", st, c.layers)
	}
	c.coldBuild = o.wall.Seconds()
	if want, ok := f.layers[layerRun{descriptor.Gzip, manyLayers}.name()]; ok {
		if !bytes.Equal(readBytes(b, cold), readBytes(b, want)) {
			b.Fatalf("%s (with --cache) differs from %s (without)", cold, want)
		}
	}
	c.row(b, "cache: cold build (empty cache)", o, fmt.Sprintf("%d layers compressed; descriptor identical to the one without a cache", st.compressed))

	// Nothing changed: every layer from the cache, bar the small ones.
	var warm []outcome
	for range f.rounds {
		o, st := c.cached(b, f.graph, filepath.Join(f.dir, "cache-warm.json"))
		if st.compressed != c.smallLayers {
			b.Fatalf("warm rebuild: %+v, want only the %d layers under 1 MiB compressed", st, c.smallLayers)
		}
		warm = append(warm, o)
	}
	c.row(b, "cache: warm rebuild, nothing changed", fastest(warm), fmt.Sprintf("%d from the cache, %d compressed; %.2f× cold build",
		c.layers-c.smallLayers, c.smallLayers, fastest(warm).wall.Seconds()/c.coldBuild))

	// The target: one path changed in a small layer, each round a new
	// variant, alternating with the none build of the same closure.
	var none, rebuild []outcome
	for range f.rounds {
		graph := c.variantGraph(b, c.small)
		o, err := f.run(b, nil, f.bin, "layers", "-o", filepath.Join(f.dir, "cache-none.json"), "--compression", "none",
			"--max-layers", strconv.Itoa(manyLayers), "--closure-graph", graph)
		if err != nil {
			b.Fatal(err)
		}
		none = append(none, o)
		o, st := c.cached(b, graph, filepath.Join(f.dir, "cache-small.json"))
		c.wantOneCompressed(b, "rebuild after a one-path change in a small layer", st)
		rebuild = append(rebuild, o)
	}
	ratio := fastest(rebuild).wall.Seconds() / fastest(none).wall.Seconds()
	b.ReportMetric(ratio, "rebuild-x-none")
	b.ReportMetric(fastest(rebuild).wall.Seconds(), "rebuild-s")
	c.row(b, "none build of the same closure", fastest(none), "--compression none, the reference of the target")
	c.row(b, "cache: rebuild, one path changed in a small layer", fastest(rebuild),
		fmt.Sprintf("1 compressed (%.0f MiB layer), %d from the cache; %.2f× none build (target ≤ %.1f× %s), %.2f× cold build",
			mib(c.smallSize), c.layers-1-c.smallLayers, ratio, rebuildTarget, met(ratio <= rebuildTarget), fastest(rebuild).wall.Seconds()/c.coldBuild))
	if ratio > rebuildTarget {
		b.Errorf("target missed: the rebuild after a one-path change in a small layer took %.2f× the --compression none build (%.2f s against %.2f s), want ≤ %.1f×",
			ratio, fastest(rebuild).wall.Seconds(), fastest(none).wall.Seconds(), rebuildTarget)
	}

	// The application changed: it sits in the largest layer.
	o, st = c.cached(b, c.variantGraph(b, c.app), filepath.Join(f.dir, "cache-app.json"))
	c.wantOneCompressed(b, "rebuild after a change of the application", st)
	c.row(b, "cache: rebuild, the app changed (largest layer)", o, fmt.Sprintf("1 compressed (%.0f MiB layer); %.2f× cold build; one round",
		mib(c.restSize), o.wall.Seconds()/c.coldBuild))

	registry := os.Getenv("NIXOCI_TEST_REGISTRY")
	if registry == "" {
		if !testenv.InCI() {
			f.rows = append(f.rows, row{what: "dev cycles", note: "skipped: NIXOCI_TEST_REGISTRY is unset"})
		}
		testenv.Missing(b, "NIXOCI_TEST_REGISTRY is unset: the dev cycles push to a registry")
	}
	c.devCycles(b, registry)
}

// plan reads the 20-layer plan of the closure (from the none run) and
// picks the paths to change.
func (c *cacheBench) plan(b *testing.B) {
	doc := c.layersDoc(b, layerRun{descriptor.None, manyLayers})
	ls, err := descriptor.LoadLayers(doc)
	if err != nil {
		b.Fatal(err)
	}
	c.layers = len(ls.Layers)
	last := ls.Layers[len(ls.Layers)-1]
	for _, l := range ls.Layers {
		if l.UncompressedSize < verifyBelow {
			c.smallLayers++
		}
		if l.UncompressedSize > last.UncompressedSize {
			last = l
		}
	}
	for _, l := range ls.Layers {
		if len(l.Paths) == 1 && l.UncompressedSize >= verifyBelow && (c.small == "" || l.UncompressedSize < c.smallSize) {
			c.small, c.smallSize = l.Paths[0].Path, l.UncompressedSize
		}
	}
	refs := c.closure.Referrers()
	for _, p := range last.Paths {
		if refs[p.Path] == 0 {
			c.app, c.restSize = p.Path, last.UncompressedSize
			break
		}
	}
	if c.small == "" || c.app == "" || c.layers < 3 {
		b.Fatalf("the %d-layer plan has no single-path layer of 1 MiB or more, or no unreferenced path in its largest layer", c.layers)
	}
}

// layersDoc is the document of a layers run, made when that sub-benchmark
// did not run.
func (f *fixture) layersDoc(b *testing.B, l layerRun) string {
	if doc, ok := f.layers[l.name()]; ok {
		return doc
	}
	doc := filepath.Join(f.dir, l.name()+".json")
	if _, err := f.run(b, nil, f.bin, f.layersArgs(l, doc)...); err != nil {
		b.Fatal(err)
	}
	f.layers[l.name()] = doc
	return doc
}

// baseline is the fastest sha256sum of the run (one is timed when none was).
func (f *fixture) baseline(b *testing.B) float64 {
	if len(f.sha256sums) == 0 {
		s, err := f.sha256sum(b)
		if err != nil {
			b.Fatal(err)
		}
		f.sha256sums, f.sha256sumCPU = append(f.sha256sums, s.wall), append(f.sha256sumCPU, s.cpu)
	}
	return slices.Min(f.sha256sums).Seconds()
}

// cached runs `nixoci layers --cache` (gzip, 20 layers) on graph.
func (c *cacheBench) cached(b *testing.B, graph, out string, extra ...string) (outcome, cacheStats) {
	b.Helper()
	args := append([]string{"layers", "-o", out, "--cache", c.cache, "--max-layers", strconv.Itoa(manyLayers), "--closure-graph", graph}, extra...)
	o, err := c.run(b, nil, c.bin, args...)
	if err != nil {
		b.Fatal(err)
	}
	return o, parseCacheStats(b, o.stderr)
}

// wantOneCompressed fails unless only the changed layer (and the small
// ones, always compressed) was compressed.
func (c *cacheBench) wantOneCompressed(b *testing.B, what string, st cacheStats) {
	b.Helper()
	if st.compressed != 1+c.smallLayers || st.hits != st.layers-st.compressed {
		b.Fatalf("%s: %d layers, %d from the cache, %d compressed; want only the changed layer compressed (and the %d under 1 MiB)",
			what, st.layers, st.hits, st.compressed, c.smallLayers)
	}
}

// variantGraph makes a new variant of p and writes the closure graph with
// p replaced by it.
func (c *cacheBench) variantGraph(b *testing.B, p string) string {
	graph, _ := c.variant(b, p)
	return graph
}

// variant is variantGraph that also returns the new path.
func (c *cacheBench) variant(b *testing.B, p string) (string, string) {
	b.Helper()
	c.variants++
	v, err := c.closure.Variant(p, c.variants)
	if err != nil {
		b.Fatal(err)
	}
	graph := filepath.Join(c.dir, fmt.Sprintf("graph-variant-%d.json", c.variants))
	if err := c.closure.WriteGraphReplacing(graph, map[string]string{p: v}); err != nil {
		b.Fatal(err)
	}
	return graph, v
}

// row adds a table row for o, with its ratio to sha256sum.
func (c *cacheBench) row(b *testing.B, what string, o outcome, note string) {
	c.rows = append(c.rows, row{what: what, seconds: o.wall.Seconds(), ratio: o.wall.Seconds() / c.sha256sum,
		cpuSeconds: o.cpu.Seconds(), rssMiB: o.rssMiB, note: note})
}

// devCycles times rebuild, image and push after a one-path change, for
// three shapes of image, pushing to one repository of registry.
func (c *cacheBench) devCycles(b *testing.B, registry string) {
	repo := strings.TrimSuffix(c.pushDest, ":latest")
	pushCache := c.pushCache
	if c.pushed == "" {
		// benchPush did not run: push the 20-layer image first.
		repo = fmt.Sprintf("docker://%s/nixoci-bench-%d", registry, time.Now().UnixNano())
		pushCache = filepath.Join(c.dir, "cache-dev")
		if err := os.Mkdir(pushCache, 0o700); err != nil {
			b.Fatal(err)
		}
		c.image(b, filepath.Join(c.dir, "dev-setup.json"), c.layersDoc(b, layerRun{descriptor.Gzip, manyLayers}))
		c.push(b, pushCache, filepath.Join(c.dir, "dev-setup.json"), repo+":setup")
	}
	type step struct {
		name string
		o    outcome
		note string
	}
	cycle := func(title string, steps []step) {
		var total float64
		for _, s := range steps {
			total += s.o.wall.Seconds()
			c.row(b, title+": "+s.name, s.o, s.note)
		}
		c.rows = append(c.rows, row{what: title + ": total", seconds: total, ratio: total / c.sha256sum,
			note: fmt.Sprintf("%.2f× cold build", total/c.coldBuild)})
	}

	// One layers document of 20 layers, a path in a small layer changed.
	{
		out, img := filepath.Join(c.dir, "dev-one.json"), filepath.Join(c.dir, "dev-one-image.json")
		rebuild, st := c.cached(b, c.variantGraph(b, c.small), out)
		c.wantOneCompressed(b, "dev cycle rebuild", st)
		image := c.image(b, img, out)
		push, note := c.push(b, pushCache, img, repo+":dev-one")
		cycle("dev cycle, one document, small layer changed", []step{
			{"rebuild (--cache)", rebuild, fmt.Sprintf("%d compressed", st.compressed)}, {"nixoci image", image, ""}, {"push", push, note}})
	}

	// nix2container's shape: the dependencies in a layers document built
	// once (a buildLayer), the application's layer built on it.
	{
		deps := filepath.Join(c.dir, "dev-deps.json")
		if _, err := c.run(b, nil, c.bin, "layers", "-o", deps, "--cache", c.cache, "--max-layers", strconv.Itoa(manyLayers-1),
			"--closure-graph", c.graph, "--ignore", c.app); err != nil {
			b.Fatal(err)
		}
		appLayer := func(graph, app, out string) outcome {
			o, err := c.run(b, nil, c.bin, "layers", "-o", out, "--cache", c.cache, "--closure-graph", graph, "--exclude-layers", deps, app)
			if err != nil {
				b.Fatal(err)
			}
			return o
		}
		setupApp, setupImg := filepath.Join(c.dir, "dev-app0.json"), filepath.Join(c.dir, "dev-app0-image.json")
		appLayer(c.graph, c.app, setupApp)
		c.image(b, setupImg, deps, setupApp)
		c.push(b, pushCache, setupImg, repo+":dev-deps-setup") // uploads the new dependency layers, untimed

		graph, v := c.variant(b, c.app)
		out, img := filepath.Join(c.dir, "dev-app1.json"), filepath.Join(c.dir, "dev-app1-image.json")
		rebuild := appLayer(graph, v, out)
		image := c.image(b, img, deps, out)
		push, note := c.push(b, pushCache, img, repo+":dev-deps")
		cycle("dev cycle, deps in a buildLayer document, app changed", []step{
			{"rebuild app layer (--cache)", rebuild, "the dependencies' document is not rebuilt (Nix keeps it)"}, {"nixoci image", image, ""}, {"push", push, note}})
	}

	// --compression none, the same change as the first cycle.
	{
		noneDoc := c.layersDoc(b, layerRun{descriptor.None, manyLayers})
		setupImg := filepath.Join(c.dir, "dev-none0-image.json")
		c.image(b, setupImg, noneDoc)
		c.push(b, pushCache, setupImg, repo+":dev-none-setup") // untimed
		out, img := filepath.Join(c.dir, "dev-none1.json"), filepath.Join(c.dir, "dev-none1-image.json")
		rebuild, err := c.run(b, nil, c.bin, "layers", "-o", out, "--compression", "none", "--max-layers", strconv.Itoa(manyLayers),
			"--closure-graph", c.variantGraph(b, c.small))
		if err != nil {
			b.Fatal(err)
		}
		image := c.image(b, img, out)
		push, note := c.push(b, pushCache, img, repo+":dev-none")
		cycle("dev cycle, --compression none, small layer changed", []step{
			{"rebuild (none)", rebuild, ""}, {"nixoci image", image, ""},
			{"push", push, note + " (pushed uncompressed, as described)"}})
	}
}

// image runs `nixoci image` on layers documents.
func (c *cacheBench) image(b *testing.B, out string, docs ...string) outcome {
	b.Helper()
	o, err := c.run(b, nil, c.bin, append([]string{"image", "-o", out, "--name", "bench"}, docs...)...)
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// push copies img to dest with the blob-info cache in dir and says how many
// blobs were uploaded and skipped.
func (c *cacheBench) push(b *testing.B, dir, img, dest string) (outcome, string) {
	b.Helper()
	name, args, env, _ := c.withCache(dir, c.bin, "copy", "--dest-tls-verify=false", "nix:"+img, dest)
	o, err := c.run(b, env, name, args...)
	if err != nil {
		b.Fatal(err)
	}
	var sent, skipped int
	var other []string
	config := "config not reported"
	for _, line := range strings.Split(o.stdout, "\n") {
		switch {
		case strings.HasPrefix(line, "config ") && strings.Contains(line, ": done ("):
			config = "config sent"
		case strings.HasPrefix(line, "config ") && strings.HasSuffix(line, "skipped: already exists"):
			config = "config skipped"
		case !strings.HasPrefix(line, "blob "):
		case strings.Contains(line, ": done ("):
			sent++
		case strings.HasSuffix(line, "skipped: already exists"):
			skipped++
		default:
			other = append(other, line[strings.LastIndex(line, ": ")+2:])
		}
	}
	note := fmt.Sprintf("layers: %d sent, %d skipped; %s", sent, skipped, config)
	if len(other) > 0 {
		note += fmt.Sprintf("; %d layer(s) reported as %q", len(other), other[0])
	}
	return o, note
}

// fastest is the outcome with the least wall time.
func fastest(runs []outcome) outcome {
	best := runs[0]
	for _, o := range runs[1:] {
		if o.wall < best.wall {
			best = o
		}
	}
	return best
}

func readBytes(b *testing.B, file string) []byte {
	b.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
