package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// Targets of issue 2; a miss is reported, not failed.
const (
	ratioTarget  = 1.5 // `nixoci layers --compression none` over sha256sum
	rssTargetMiB = 150 // peak RSS of any nixoci command
)

const (
	// commandTimeout bounds every command the benchmark runs.
	commandTimeout = 10 * time.Minute
	// defaultRounds is how often each timed command runs, alternating
	// with its sha256sum baseline; the minimum counts.
	defaultRounds = 3
	// manyLayers is --max-layers for the parallel runs: enough layers to
	// keep every core busy.
	manyLayers = 20
	// systemCacheDir is where containers/image keeps root's blob-info cache.
	systemCacheDir = "/var/lib/containers/cache"
)

// layerRun is one `nixoci layers` configuration. One layer is made from
// the store paths as arguments; several from the closure graph, so that
// popularity puts the much-referenced large paths in layers of their own
// (as buildLayeredImage would) and the layers are hashed in parallel.
type layerRun struct {
	compression string
	maxLayers   int
}

func (l layerRun) name() string {
	if l.maxLayers == 1 {
		return l.compression + "-1layer"
	}
	return fmt.Sprintf("%s-%dlayers", l.compression, l.maxLayers)
}

// graph says whether the run takes --closure-graph instead of paths.
func (l layerRun) graph() bool { return l.maxLayers > 1 }

// fixture is the state shared by the sub-benchmarks of one run.
type fixture struct {
	dir     string // scratch directory, removed by the testing package
	bin     string // the nixoci binary built for this run
	closure *Closure
	graph   string // the closure's exportReferencesGraph JSON
	rounds  int
	layers  map[string]string // layerRun.name() → LAYERS.json
	rows    []row             // the summary table
	// sha256sums are all timed baseline runs.
	sha256sums, sha256sumCPU []time.Duration
	// pushed is the image benchPush pushed, to the repository pushDest
	// with the blob-info cache pushCache (empty when it did not run).
	pushed, pushDest, pushCache string
}

// row is one line of the summary table.
type row struct {
	what    string
	seconds float64
	ratio   float64 // to sha256sum; 0: not applicable
	// cpuSeconds and cpuRatio are the same for CPU time; 0: not measured.
	cpuSeconds, cpuRatio float64
	rssMiB               float64 // 0: not measured
	note                 string
}

// outcome is what one command run cost.
type outcome struct {
	wall time.Duration
	// cpu is user plus system time of the command and the children it
	// waited for: unlike wall time, it hardly moves when other processes
	// compete for the cores.
	cpu    time.Duration
	rssMiB float64
	stdout string
	stderr string
}

// BenchmarkClosure runs the nixoci binary, as users run it, on a generated
// closure of about 1 GiB and compares `nixoci layers` with sha256sum over
// the same files in the same run. Run it with
//
//	go test -tags 'containers_image_openpgp exclude_graphdriver_btrfs' -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/
//
// Each sub-benchmark does its own rounds (NIXOCI_BENCH_ROUNDS, default 3)
// whatever b.N is, so -benchtime 1x is the right setting. The push
// sub-benchmark needs a registry at NIXOCI_TEST_REGISTRY (plain HTTP).
// NIXOCI_BENCH_MIB changes the closure size (default 1024).
func BenchmarkClosure(b *testing.B) {
	f := newFixture(b)
	for _, l := range []layerRun{
		{descriptor.None, 1},
		{descriptor.None, manyLayers},
		{descriptor.Gzip, 1},
		{descriptor.Gzip, manyLayers},
	} {
		b.Run("layers/"+l.name(), func(b *testing.B) { f.benchLayers(b, l) })
	}
	b.Run("push", f.benchPush)
	b.Run("cache", f.benchCache)
	f.printTable(os.Stdout)
}

func newFixture(b *testing.B) *fixture {
	f := &fixture{dir: b.TempDir(), rounds: defaultRounds, layers: map[string]string{}}
	if s := os.Getenv("NIXOCI_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("NIXOCI_BENCH_ROUNDS=%q: give a number of rounds ≥ 1", s)
		}
		f.rounds = n
	}
	o := DefaultOptions()
	if s := os.Getenv("NIXOCI_BENCH_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 16 {
			b.Fatalf("NIXOCI_BENCH_MIB=%q: give a closure size in MiB ≥ 16", s)
		}
		o.TotalBytes = n << 20
	}
	for _, tool := range []string{"go", "sha256sum", "find", "xargs", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("the benchmark needs %s: %v", tool, err)
		}
	}

	start := time.Now()
	f.bin = filepath.Join(f.dir, "nixoci")
	if err := testenv.BuildNixoci(f.bin, true); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s in %v", f.bin, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	c, err := Generate(f.dir, o)
	if err != nil {
		b.Fatal(err)
	}
	f.closure = c
	f.graph = filepath.Join(f.dir, "graph.json")
	if err := c.WriteGraph(f.graph); err != nil {
		b.Fatal(err)
	}
	// Flush the new files so that writeback does not compete with the
	// timed commands, then read everything once so that every timed
	// command reads from the page cache.
	syscall.Sync()
	if _, err := f.sha256sum(b); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d store paths, %d files (%d hard links), %d symlinks, %.0f MiB in %v",
		len(c.Paths), c.Files, c.HardLinks, c.Symlinks, mib(c.Bytes), time.Since(start).Round(time.Millisecond))
	return f
}

// sha256sum is the baseline: one pipeline, as a user would type it, that
// hashes every regular file of the closure with coreutils' sha256sum
// (xargs runs it on batches of files one after another, single-threaded).
// Symlinks are not followed; hard-linked files are read once per name, as
// nixoci does.
func (f *fixture) sha256sum(b *testing.B) (outcome, error) {
	return f.run(b, nil, "bash", "-o", "pipefail", "-c",
		`find "$0" -type f -print0 | xargs -0 sha256sum >/dev/null`, f.closure.Store)
}

// run runs a command with a time limit and measures its wall time and the
// child's peak RSS. env is added to the environment.
func (f *fixture) run(b *testing.B, env []string, name string, args ...string) (outcome, error) {
	b.Helper()
	start := time.Now()
	r := testenv.Cmd{Name: name, Args: args, Env: env, Timeout: commandTimeout}.Run(context.Background())
	o := outcome{wall: time.Since(start), stdout: r.Stdout, stderr: r.Stderr}
	if r.Err != nil {
		return o, fmt.Errorf("running %s %s: %w\n%s", name, strings.Join(args, " "), r.Err, tail(r.Stderr, 4000))
	}
	if ru, ok := r.State.SysUsage().(*syscall.Rusage); ok {
		o.rssMiB = float64(ru.Maxrss) / 1024 // KiB on Linux
		o.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return o, nil
}

// layersArgs are the arguments of `nixoci layers` for l, writing out.
func (f *fixture) layersArgs(l layerRun, out string) []string {
	args := []string{"layers", "-o", out, "--compression", l.compression, "--max-layers", strconv.Itoa(l.maxLayers)}
	if l.graph() {
		return append(args, "--closure-graph", f.graph)
	}
	return append(args, f.closure.Paths...)
}

// benchLayers times `nixoci layers` for l against sha256sum, alternating
// them f.rounds times and keeping each one's minimum.
func (f *fixture) benchLayers(b *testing.B, l layerRun) {
	out := filepath.Join(f.dir, l.name()+".json")
	var base, run, baseCPU, runCPU []time.Duration
	var rss float64
	for range f.rounds {
		s, err := f.sha256sum(b)
		if err != nil {
			b.Fatal(err)
		}
		f.sha256sumCPU = append(f.sha256sumCPU, s.cpu)
		base, baseCPU = append(base, s.wall), append(baseCPU, s.cpu)
		f.sha256sums = append(f.sha256sums, s.wall)
		o, err := f.run(b, nil, f.bin, f.layersArgs(l, out)...)
		if err != nil {
			b.Fatal(err)
		}
		run, runCPU = append(run, o.wall), append(runCPU, o.cpu)
		rss = max(rss, o.rssMiB)
	}
	ls, err := descriptor.LoadLayers(out)
	if err != nil {
		b.Fatalf("reading what nixoci layers wrote: %v", err)
	}
	var tarBytes, blobBytes int64
	for _, x := range ls.Layers {
		tarBytes += x.UncompressedSize
		blobBytes += x.Size
	}
	if len(ls.Layers) == 0 || len(ls.Layers) > l.maxLayers || tarBytes < f.closure.Bytes {
		b.Fatalf("nixoci layers wrote %d layers of %d tar bytes; want 1 to %d layers holding at least the closure's %d bytes",
			len(ls.Layers), tarBytes, l.maxLayers, f.closure.Bytes)
	}
	f.layers[l.name()] = out

	best, baseline := slices.Min(run), slices.Min(base)
	ratio := best.Seconds() / baseline.Seconds()
	b.ReportMetric(float64(best.Nanoseconds()), "ns/op")
	b.ReportMetric(best.Seconds(), "s")
	b.ReportMetric(baseline.Seconds(), "sha256sum-s")
	b.ReportMetric(ratio, "x-sha256sum")
	cpuRatio := slices.Min(runCPU).Seconds() / slices.Min(baseCPU).Seconds()
	b.ReportMetric(slices.Min(runCPU).Seconds(), "cpu-s")
	b.ReportMetric(cpuRatio, "x-sha256sum-cpu")
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.ReportMetric(mib(tarBytes)/best.Seconds()*1.048576, "MB/s")
	var largest int64
	for _, x := range ls.Layers {
		largest = max(largest, x.UncompressedSize)
	}
	from := "paths"
	if l.graph() {
		from = "graph"
	}
	note := fmt.Sprintf("from %s: %d layers (largest %.0f MiB), tar %.0f MiB, blobs %.0f MiB",
		from, len(ls.Layers), mib(largest), mib(tarBytes), mib(blobBytes))
	if l.compression == descriptor.None {
		note += ", target ≤ " + strconv.FormatFloat(ratioTarget, 'f', -1, 64) + "× " + met(ratio <= ratioTarget)
	}
	f.rows = append(f.rows, row{what: "nixoci layers " + l.name(), seconds: best.Seconds(), ratio: ratio,
		cpuSeconds: slices.Min(runCPU).Seconds(), cpuRatio: cpuRatio, rssMiB: rss, note: note})
}

// benchPush builds an image of the gzip layers and pushes it with `nixoci
// copy` three times to a new repository: fresh (empty blob-info cache),
// repeated (same cache), and repeated from a fresh empty cache (every
// blob must still be found on the registry, by digest).
func (f *fixture) benchPush(b *testing.B) {
	registry := os.Getenv("NIXOCI_TEST_REGISTRY")
	if registry == "" {
		if !testenv.InCI() {
			f.rows = append(f.rows, row{what: "push", note: "skipped: NIXOCI_TEST_REGISTRY is unset"})
		}
		testenv.Missing(b, "NIXOCI_TEST_REGISTRY is unset: start a registry (docker-registry serve CONFIG; .ci/run starts one on 127.0.0.1:5000) and set it to HOST:PORT")
	}
	l := layerRun{descriptor.Gzip, manyLayers}
	layers, ok := f.layers[l.name()]
	if !ok {
		layers = filepath.Join(f.dir, l.name()+".json")
		if _, err := f.run(b, nil, f.bin, f.layersArgs(l, layers)...); err != nil {
			b.Fatal(err)
		}
	}
	img := filepath.Join(f.dir, "image.json")
	o, err := f.run(b, nil, f.bin, "image", "-o", img, "--name", "bench", layers)
	if err != nil {
		b.Fatal(err)
	}
	f.rows = append(f.rows, row{what: "nixoci image (" + l.name() + ")", seconds: o.wall.Seconds(), cpuSeconds: o.cpu.Seconds(), rssMiB: o.rssMiB})
	ls, err := descriptor.LoadLayers(layers)
	if err != nil {
		b.Fatalf("reading %s: %v", layers, err)
	}
	var blobBytes int64
	for _, x := range ls.Layers {
		blobBytes += x.Size
	}
	blobs := len(ls.Layers) + 1 // and the config

	dest := fmt.Sprintf("docker://%s/nixoci-bench-%d:latest", registry, time.Now().UnixNano())
	f.pushed, f.pushDest, f.pushCache = img, dest, filepath.Join(f.dir, "cache-a")
	cacheA, cacheB := filepath.Join(f.dir, "cache-a"), filepath.Join(f.dir, "cache-b")
	for _, d := range []string{cacheA, cacheB} {
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	type push struct {
		name, cache, what string
	}
	var rss float64
	for _, p := range []push{
		{"fresh", cacheA, "push fresh (empty cache, new repository)"},
		{"repeated", cacheA, "push repeated (same cache)"},
		{"repeated-empty-cache", cacheB, "push repeated (fresh empty cache)"},
	} {
		name, args, env, isolated := f.withCache(p.cache, f.bin, "copy", "--dest-tls-verify=false", "nix:"+img, dest)
		o, err := f.run(b, env, name, args...)
		if err != nil {
			b.Fatal(err)
		}
		skipped := strings.Count(o.stdout, "skipped")
		rss = max(rss, o.rssMiB)
		b.ReportMetric(o.wall.Seconds(), p.name+"-s")
		b.ReportMetric(float64(skipped), p.name+"-skipped")
		note := fmt.Sprintf("%d of %d blobs skipped", skipped, blobs)
		if p.name == "fresh" {
			note += fmt.Sprintf(", %.0f MiB uploaded", mib(blobBytes))
			b.ReportMetric(float64(o.wall.Nanoseconds()), "ns/op")
		}
		switch {
		case !isolated:
			note += ", system blob-info cache (not isolated: needs root and unshare)"
		case empty(p.cache):
			note += ", the blob-info cache stayed empty"
		}
		f.rows = append(f.rows, row{what: p.what, seconds: o.wall.Seconds(), cpuSeconds: o.cpu.Seconds(), rssMiB: o.rssMiB, note: note})
	}
	b.ReportMetric(rss, "peak-RSS-MiB")
}

// withCache returns the command line and environment that run name args
// with the containers/image blob-info cache in dir. `nixoci copy` has no
// flag for it, so for root (whose cache is always systemCacheDir) dir is
// bind-mounted over systemCacheDir in a private mount namespace; others
// get XDG_DATA_HOME. isolated is false when root cannot make a mount
// namespace.
func (f *fixture) withCache(dir, name string, args ...string) (string, []string, []string, bool) {
	if os.Geteuid() != 0 {
		data := filepath.Join(dir, "data")
		return name, args, []string{"XDG_DATA_HOME=" + data}, true
	}
	if err := exec.Command("unshare", "--mount", "true").Run(); err != nil {
		return name, args, nil, false // no unshare, or no CAP_SYS_ADMIN
	}
	script := `mkdir -p "$1" && mount --bind "$0" "$1" && shift && exec "$@"`
	return "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, dir, systemCacheDir, name}, args...), nil, true
}

// printTable writes the summary with the targets.
func (f *fixture) printTable(w io.Writer) {
	if len(f.rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nnixoci benchmark: %d store paths, %d files, %.0f MiB; minimum of %d rounds; targets: layers none ≤ %.1f× sha256sum, peak RSS ≤ %d MiB\n",
		len(f.closure.Paths), f.closure.Files, mib(f.closure.Bytes), f.rounds, ratioTarget, rssTargetMiB)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\twall s\t× sha256sum\tCPU s\t× sha256sum CPU\tpeak RSS MiB\tnotes")
	rows := f.rows
	if len(f.sha256sums) > 0 {
		rows = append([]row{{what: "sha256sum (baseline)", seconds: slices.Min(f.sha256sums).Seconds(),
			cpuSeconds: slices.Min(f.sha256sumCPU).Seconds(),
			note:       fmt.Sprintf("%d files, %.0f MiB; ratios use the runs alternated with each command", f.closure.Files, mib(f.closure.Bytes))}}, rows...)
	}
	for _, r := range rows {
		ratio, cpu, cpuRatio, rss := "", "", "", ""
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		if r.cpuSeconds > 0 {
			cpu = fmt.Sprintf("%.2f", r.cpuSeconds)
		}
		if r.cpuRatio > 0 {
			cpuRatio = fmt.Sprintf("%.2f", r.cpuRatio)
		}
		if r.rssMiB > 0 {
			rss = fmt.Sprintf("%.0f (%s)", r.rssMiB, met(r.rssMiB <= rssTargetMiB))
		}
		wall := ""
		if r.seconds > 0 {
			wall = fmt.Sprintf("%.2f", r.seconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.what, wall, ratio, cpu, cpuRatio, rss, r.note)
	}
	tw.Flush()
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// empty says whether dir holds nothing (or cannot be read).
func empty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err != nil || len(entries) == 0
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
