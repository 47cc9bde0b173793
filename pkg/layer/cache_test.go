package layer_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// openCache opens a cache in a new directory; verifyBelow as in CacheOptions.
func openCache(t testing.TB, dir string, verifyBelow int64) (*layer.Cache, *logtest.Hook) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	c, err := layer.OpenCache(dir, layer.CacheOptions{Create: true, VerifyBelow: verifyBelow, Log: log})
	if err != nil {
		t.Fatalf("OpenCache(%s) = %v", dir, err)
	}
	return c, hook
}

// oneLayerEach makes a spec per path.
func oneLayerEach(paths []descriptor.Path, alg string, c *layer.Cache) []layer.Spec {
	specs := make([]layer.Spec, len(paths))
	for i, p := range paths {
		specs[i] = layer.Spec{Paths: []descriptor.Path{p}, Compression: alg, Cache: c}
	}
	return specs
}

// describeAll describes specs and returns their descriptors.
func describeAll(t testing.TB, specs []layer.Spec) []descriptor.Layer {
	t.Helper()
	ls, err := layer.DescribeAll(ctx(t), specs)
	if err != nil {
		t.Fatalf("DescribeAll() = %v", err)
	}
	ds, err := layer.Descriptors(ls)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func withoutCache(specs []layer.Spec) []layer.Spec {
	out := append([]layer.Spec(nil), specs...)
	for i := range out {
		out[i].Cache = nil
	}
	return out
}

func TestCacheGivesTheSameLayers(t *testing.T) {
	paths := mkStore(t, 4, 1<<20) // layers of about 1.4 MiB
	for _, tc := range []struct {
		name        string
		alg         string
		verifyBelow int64
		tarFiles    bool
		twoPass     bool
		// warm is what the second build with the cache must count.
		warm layer.CacheStats
	}{
		{name: "gzip", alg: descriptor.Gzip, verifyBelow: 0, warm: layer.CacheStats{Layers: 4, Hits: 4}},
		{name: "zstd", alg: descriptor.Zstd, warm: layer.CacheStats{Layers: 4, Hits: 4}},
		{name: "default", alg: "", warm: layer.CacheStats{Layers: 4, Hits: 4}},
		{name: "gzip-verify-all", alg: descriptor.Gzip, verifyBelow: 1 << 30, warm: layer.CacheStats{Layers: 4, Compressed: 4, Checked: 4}},
		{name: "gzip-tar-files", alg: descriptor.Gzip, tarFiles: true, warm: layer.CacheStats{Layers: 4, Hits: 4}},
		{name: "gzip-two-pass", alg: descriptor.Gzip, twoPass: true, warm: layer.CacheStats{Layers: 4, Hits: 4}},
		{name: "none", alg: descriptor.None, warm: layer.CacheStats{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, hook := openCache(t, t.TempDir(), tc.verifyBelow)
			c.SetTwoPass(tc.twoPass)
			specs := oneLayerEach(paths, tc.alg, c)
			if tc.tarFiles {
				dir := t.TempDir()
				for i := range specs {
					specs[i].TarFile = filepath.Join(dir, fmt.Sprintf("layer-%d.tar", i))
				}
			}
			want := describeAll(t, withoutCache(specs))
			cold := describeAll(t, specs)
			if diff := cmp.Diff(want, cold); diff != "" {
				t.Fatalf("cold build with a cache differs from one without (-without +with):\n%s", diff)
			}
			coldStats := c.Stats()
			if tc.alg != descriptor.None && (coldStats.Compressed != 4 || coldStats.Written != 4 || coldStats.Hits != 0) {
				t.Errorf("cold build: Stats() = %+v, want 4 compressed and written", coldStats)
			}
			c2, hook2 := openCache(t, c.Dir(), tc.verifyBelow)
			c2.SetTwoPass(tc.twoPass)
			for i := range specs {
				specs[i].Cache = c2
			}
			warm := describeAll(t, specs)
			if diff := cmp.Diff(want, warm); diff != "" {
				t.Fatalf("warm build with a cache differs from one without (-without +with):\n%s", diff)
			}
			if got := c2.Stats(); got != tc.warm {
				t.Errorf("warm build: Stats() = %+v, want %+v", got, tc.warm)
			}
			for _, l := range warm {
				lv, err := layer.FromDescriptor(l)
				if err != nil {
					t.Fatal(err)
				}
				checkBlob(t, lv)
			}
			for _, h := range []*logtest.Hook{hook, hook2} {
				for _, e := range h.AllEntries() {
					t.Errorf("unexpected log: %s", e.Message)
				}
			}
		})
	}
}

// newStorePath writes a store path next to the others with one file.
func newStorePath(t testing.TB, like descriptor.Path, name, content string) descriptor.Path {
	t.Helper()
	p := filepath.Join(filepath.Dir(like.Path), name)
	mkdirFile(t, filepath.Join(p, "bin", "app"), content)
	return descriptor.Path{Path: p}
}

func mkdirFile(t testing.TB, file, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCacheCompressesOnlyChangedLayers(t *testing.T) {
	paths := mkStore(t, 4, 1<<20)
	big := strings.Repeat("application code\n", 1<<17) // 2.1 MiB
	app1 := newStorePath(t, paths[0], "11111111111111111111111111111111-app", big+"v1")
	app2 := newStorePath(t, paths[0], "22222222222222222222222222222222-app", big+"v2")
	for _, twoPass := range []bool{false, true} {
		t.Run(fmt.Sprintf("twoPass=%v", twoPass), func(t *testing.T) {
			c, _ := openCache(t, t.TempDir(), 0)
			c.SetTwoPass(twoPass)
			describeAll(t, oneLayerEach(append(paths, app1), descriptor.Gzip, c))
			c, _ = openCache(t, c.Dir(), 0)
			c.SetTwoPass(twoPass)
			specs := oneLayerEach(append(paths, app2), descriptor.Gzip, c)
			got := describeAll(t, specs)
			if diff := cmp.Diff(describeAll(t, withoutCache(specs)), got); diff != "" {
				t.Fatalf("rebuild with a cache differs from one without (-without +with):\n%s", diff)
			}
			want := layer.CacheStats{Layers: 5, Hits: 4, Compressed: 1, Written: 1}
			if twoPass {
				want.Restreamed = 1 // the changed layer, hashed then compressed
			}
			if s := c.Stats(); s != want {
				t.Errorf("rebuild after a one-path change: Stats() = %+v, want %+v", s, want)
			}
		})
	}
}

// TestCacheStaleHint: a hint says which tar a spec gave last time, but the
// tar is always hashed anew; when it changed, the layer is compressed in a
// second stream.
func TestCacheStaleHint(t *testing.T) {
	paths := mkStore(t, 1, 1<<20)
	c, _ := openCache(t, t.TempDir(), 0)
	specs := oneLayerEach(paths, descriptor.Gzip, c)
	describeAll(t, specs)
	// A store path never changes, but nothing may go wrong if it does.
	mkdirFile(t, filepath.Join(paths[0].Path, "share", "new"), "new file")
	got := describeAll(t, specs)
	if diff := cmp.Diff(describeAll(t, withoutCache(specs)), got); diff != "" {
		t.Fatalf("with a stale hint (-without +with):\n%s", diff)
	}
	if s := c.Stats(); s.Restreamed != 1 || s.Hits != 0 || s.Compressed != 2 {
		t.Errorf("Stats() = %+v, want the second build streamed twice and compressed (2 compressed in all)", s)
	}
}

// entryFiles lists the cache's entry files.
func entryFiles(t testing.TB, c *layer.Cache) []string {
	t.Helper()
	des, err := os.ReadDir(c.EntriesDir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, filepath.Join(c.EntriesDir(), de.Name()))
	}
	return out
}

// reseal rewrites an entry file with edit applied to its JSON and a
// matching checksum: a well-formed entry saying something else.
func reseal(t testing.TB, file string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := bytes.Cut(data, []byte("\n"))
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	body, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	os.Remove(file) // entries are read-only
	if err := os.WriteFile(file, append(body, []byte("\nsha256 "+hex.EncodeToString(sum[:])+"\n")...), 0o444); err != nil {
		t.Fatal(err)
	}
}

func TestCacheDamagedEntriesAreMisses(t *testing.T) {
	paths := mkStore(t, 2, 1<<20)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, files []string)
	}{
		{"truncated", func(t *testing.T, files []string) {
			data, _ := os.ReadFile(files[0])
			os.Remove(files[0])
			mkdirFile(t, files[0], string(data[:len(data)/2]))
		}},
		{"empty", func(t *testing.T, files []string) {
			os.Remove(files[0])
			mkdirFile(t, files[0], "")
		}},
		{"one byte changed", func(t *testing.T, files []string) {
			data, _ := os.ReadFile(files[0])
			i := bytes.Index(data, []byte(`"size":`)) + len(`"size":`)
			data[i] = '9'
			os.Remove(files[0])
			mkdirFile(t, files[0], string(data))
		}},
		{"not json", func(t *testing.T, files []string) {
			body := "garbage"
			sum := sha256.Sum256([]byte(body))
			os.Remove(files[0])
			mkdirFile(t, files[0], body+"\nsha256 "+hex.EncodeToString(sum[:])+"\n")
		}},
		{"another key's entry", func(t *testing.T, files []string) {
			// Each file holds the other's entry: well formed, wrong place.
			a, _ := os.ReadFile(files[0])
			b, _ := os.ReadFile(files[1])
			os.Remove(files[0])
			os.Remove(files[1])
			mkdirFile(t, files[0], string(b))
			mkdirFile(t, files[1], string(a))
		}},
		{"a directory", func(t *testing.T, files []string) {
			os.Remove(files[0])
			if err := os.Mkdir(files[0], 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := openCache(t, t.TempDir(), -1)
			specs := oneLayerEach(paths, descriptor.Gzip, c)
			want := describeAll(t, specs)
			files := entryFiles(t, c)
			if len(files) != 2 {
				t.Fatalf("cache has %d entries, want 2", len(files))
			}
			tc.damage(t, files)
			c, hook := openCache(t, c.Dir(), -1)
			for i := range specs {
				specs[i].Cache = c
			}
			got := describeAll(t, specs)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("with a damaged entry (-want +got):\n%s", diff)
			}
			s := c.Stats()
			if s.Rejected < 1 || s.Compressed < 1 || s.Wrong != 0 {
				t.Errorf("Stats() = %+v, want the damaged entry rejected and its layer compressed", s)
			}
			if len(hook.AllEntries()) == 0 || !strings.Contains(hook.LastEntry().Message, "damaged entry") {
				t.Errorf("no warning about the damaged entry")
			}
			// A directory in the way cannot be replaced; anything else is.
			if tc.name != "a directory" {
				c, _ = openCache(t, c.Dir(), -1)
				for i := range specs {
					specs[i].Cache = c
				}
				describeAll(t, specs)
				if s := c.Stats(); s.Hits != 2 {
					t.Errorf("after the repair: Stats() = %+v, want 2 hits", s)
				}
			}
		})
	}
}

// TestCacheWrongEntry: a well-formed entry with a wrong compressed digest
// (what someone with write access to the cache could write) is caught by
// compressing small layers; for a large layer it makes a descriptor whose
// blob stream fails before a destination could commit it.
func TestCacheWrongEntry(t *testing.T) {
	paths := mkStore(t, 1, 1<<20)
	const bogus = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	poisoned := func(t *testing.T, verifyBelow int64) (*layer.Cache, *logtest.Hook, []layer.Spec, []descriptor.Layer) {
		c, _ := openCache(t, t.TempDir(), verifyBelow)
		specs := oneLayerEach(paths, descriptor.Gzip, c)
		want := describeAll(t, specs)
		reseal(t, entryFiles(t, c)[0], func(m map[string]any) { m["digest"] = bogus })
		c, hook := openCache(t, c.Dir(), verifyBelow)
		for i := range specs {
			specs[i].Cache = c
		}
		return c, hook, specs, want
	}

	t.Run("small layers are checked", func(t *testing.T) {
		c, hook, specs, want := poisoned(t, 1<<30)
		got := describeAll(t, specs)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("with a wrong entry (-want +got):\n%s", diff)
		}
		if s := c.Stats(); s.Wrong != 1 || s.Written != 1 {
			t.Errorf("Stats() = %+v, want 1 wrong entry, replaced", s)
		}
		if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "WRONG") || !strings.Contains(e.Message, bogus) {
			t.Errorf("last log entry = %v, want a warning naming the wrong digest", e)
		}
		// Replaced: the next build finds the right one.
		c, _ = openCache(t, c.Dir(), -1)
		for i := range specs {
			specs[i].Cache = c
		}
		if diff := cmp.Diff(want, describeAll(t, specs)); diff != "" || c.Stats().Hits != 1 {
			t.Errorf("after the repair: stats %+v, diff %s", c.Stats(), diff)
		}
	})

	t.Run("large layers fail when streamed", func(t *testing.T) {
		_, _, specs, want := poisoned(t, -1)
		got := describeAll(t, specs)
		if got[0].Digest != bogus || got[0].DiffID != want[0].DiffID {
			t.Fatalf("descriptor digest %s diff_id %s: the test expects the wrong entry to be used", got[0].Digest, got[0].DiffID)
		}
		lv, err := layer.FromDescriptor(got[0])
		if err != nil {
			t.Fatal(err)
		}
		r, err := lv.Compressed(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		var m *layer.MismatchError
		if !errors.As(err, &m) || !strings.Contains(err.Error(), "digest cache") || !strings.Contains(err.Error(), bogus) {
			t.Fatalf("reading the blob = %v, want a MismatchError naming the digest and the digest cache", err)
		}
		// The uncompressed view is still right: the tar is always hashed.
		checkTar := readAll(t, layer.Uncompressed(lv), false)
		if int64(len(checkTar)) != want[0].UncompressedSize {
			t.Errorf("uncompressed view has %d bytes, want %d", len(checkTar), want[0].UncompressedSize)
		}
	})
}

func TestOpenCacheErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := layer.OpenCache(filepath.Join(dir, "missing"), layer.CacheOptions{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("OpenCache(missing) = %v, want an error naming it", err)
	}
	file := filepath.Join(dir, "file")
	mkdirFile(t, file, "")
	if _, err := layer.OpenCache(file, layer.CacheOptions{Create: true}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("OpenCache(file) = %v, want not a directory", err)
	}
	if _, err := layer.OpenCache("", layer.CacheOptions{}); err == nil {
		t.Error("OpenCache(\"\") = nil error")
	}
	// A group-shared directory keeps its mode in the subdirectories.
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o770|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	c, err := layer.OpenCache(shared, layer.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.EntriesDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeSetgid); got != 0o770|os.ModeSetgid {
		t.Errorf("entries directory mode %v, want the root's 2770", got)
	}
}

// The helper process of TestCacheConcurrentProcesses.
const helperEnv = "NIXOCI_LAYER_CACHE_HELPER"

// TestCacheConcurrentProcesses runs several processes that describe the
// same layers into one cache at once, twice over: each must write what a
// build without a cache writes, and the cache must end with one complete
// entry per layer and no temporary files.
func TestCacheConcurrentProcesses(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper")
	}
	paths := mkStore(t, 6, 512<<10)
	want, err := json.Marshal(describeAll(t, oneLayerEach(paths, descriptor.Gzip, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	spec, err := json.Marshal(paths)
	if err != nil {
		t.Fatal(err)
	}
	const procs = 4
	for round := range 2 {
		outs := make([]string, procs)
		var wg sync.WaitGroup
		errs := make([]error, procs)
		for i := range procs {
			outs[i] = filepath.Join(t.TempDir(), "out.json")
			cmd := exec.CommandContext(ctx(t), os.Args[0], "-test.run=^TestCacheHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+cacheDir, helperEnv+"_OUT="+outs[i], helperEnv+"_PATHS="+string(spec))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("helper %d: %w\n%s", i, err, out)
				}
			}()
		}
		wg.Wait()
		for i := range procs {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			got, err := os.ReadFile(outs[i])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("round %d, process %d wrote\n%s\nwant\n%s", round, i, got, want)
			}
		}
	}
	c, _ := openCache(t, cacheDir, -1)
	files := entryFiles(t, c)
	if len(files) != len(paths) {
		t.Errorf("cache has %d entries, want %d (one per layer)", len(files), len(paths))
	}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), ".tmp") {
			t.Errorf("temporary file left: %s", f)
		}
	}
	describeAll(t, oneLayerEach(paths, descriptor.Gzip, c))
	if s := c.Stats(); s.Hits != int64(len(paths)) || s.Rejected != 0 {
		t.Errorf("after the concurrent builds: Stats() = %+v, want every layer a hit", s)
	}
}

func TestCacheHelperProcess(t *testing.T) {
	v := os.Getenv(helperEnv)
	if v == "" {
		t.Skip("run by TestCacheConcurrentProcesses")
	}
	var paths []descriptor.Path
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv+"_PATHS")), &paths); err != nil {
		t.Fatal(err)
	}
	c, err := layer.OpenCache(v, layer.CacheOptions{Create: true, VerifyBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(describeAll(t, oneLayerEach(paths, descriptor.Gzip, c)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv(helperEnv+"_OUT"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Rejected != 0 || s.Wrong != 0 {
		t.Fatalf("helper saw damaged or wrong entries: %+v (pid %s)", s, strconv.Itoa(os.Getpid()))
	}
}
