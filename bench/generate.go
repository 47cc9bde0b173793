package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Options say what Generate makes. Start from DefaultOptions.
type Options struct {
	// Seed makes the closure: the same seed gives the same tree.
	Seed uint64
	// TotalBytes is the approximate sum of regular file sizes.
	TotalBytes int64
	// SmallPaths is the number of store paths holding only small files
	// (0.5–64 KiB each, a few to a few dozen per path).
	SmallPaths int
	// LargePaths is the number of store paths that also hold large files;
	// they share what the small paths leave of TotalBytes.
	LargePaths int
}

// DefaultOptions is the closure of the benchmark: about 1 GiB in 320 store
// paths, a sixth of it in about 13,000 small files.
func DefaultOptions() Options {
	return Options{Seed: 1, TotalBytes: 1 << 30, SmallPaths: 300, LargePaths: 20}
}

// Closure is a generated closure.
type Closure struct {
	// Store is the directory holding the store paths (…/nix/store).
	Store string
	// Paths are the store paths, absolute and sorted.
	Paths []string
	// Files and Bytes count the regular files and their sizes (a hard link
	// counts once per name, as it is read once per name).
	Files int
	Bytes int64
	// Symlinks and HardLinks count the links made.
	Symlinks, HardLinks int
	// References maps each store path to the paths it refers to, sorted:
	// a graph without cycles in which the large paths are the most
	// referenced, like the C library and interpreters of a real closure.
	References map[string][]string

	sizes map[string]int64 // bytes of regular files per store path
}

// graphEntry is one element of Nix's exportReferencesGraph JSON.
type graphEntry struct {
	Path       string   `json:"path"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
}

// WriteGraph writes the closure's references as Nix's exportReferencesGraph
// JSON (narSize is the sum of file sizes; narHash is left out), the input
// of `nixoci layers --closure-graph`.
func (c *Closure) WriteGraph(file string) error {
	entries := make([]graphEntry, 0, len(c.Paths))
	for _, p := range c.Paths {
		refs := c.References[p]
		if refs == nil {
			refs = []string{}
		}
		entries = append(entries, graphEntry{Path: p, NarSize: c.sizes[p], References: refs})
	}
	data, err := json.MarshalIndent(entries, "", " ")
	if err != nil {
		return fmt.Errorf("writing closure graph %s: %w", file, err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return fmt.Errorf("writing closure graph %s: %w", file, err)
	}
	return nil
}

const (
	smallMin = 512
	smallMax = 64 << 10
	// smallShare is the part of TotalBytes that goes to small files.
	smallShare = 6
	// textFraction of small files (and half of the large ones) are
	// text-like and compress; the others are random, like compiled code
	// that is already dense or compressed data.
	textFraction = 0.7
	// corpusSize is the most text that text-like files are cut from
	// (TotalBytes/64, at least 1 MiB): large enough that compressors with
	// a window of a few MiB find few repeats across files that would not
	// be there in a real closure.
	corpusSize = 16 << 20
	chunk      = 1 << 20
)

// nixBase32 is the alphabet of Nix store path hashes.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// packageNames are the names store paths are given (with a version).
const packageNames = "glibc openssl zlib bash coreutils python3 perl ncurses readline " +
	"libffi sqlite curl nghttp2 gcc-lib icu libxml2 expat gmp mpfr xz bzip2 zstd " +
	"util-linux systemd-minimal dbus glib pcre2 libidn2 libunistring gnugrep gnused " +
	"findutils tzdata cacert iana-etc nodejs libuv brotli jq oniguruma"

// generator holds the state of one Generate call.
type generator struct {
	src    *rand.ChaCha8
	rng    *rand.Rand
	corpus []byte
	buf    []byte
	c      *Closure
	files  []string // regular files made so far, for hard links
}

// Generate writes a closure into dir/nix/store (dir must exist and be
// empty or missing that subtree) and returns what it made. Directories are
// writable so that the tree can be removed; nixoci canonicalises modes.
func Generate(dir string, o Options) (*Closure, error) {
	if o.TotalBytes <= 0 || o.SmallPaths < 0 || o.LargePaths < 1 {
		return nil, errors.New("generating closure: give TotalBytes > 0, SmallPaths ≥ 0 and LargePaths ≥ 1")
	}
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(o.Seed >> (8 * i))
	}
	src := rand.NewChaCha8(seed)
	g := &generator{
		src: src,
		rng: rand.New(src),
		buf: make([]byte, chunk),
		c:   &Closure{Store: filepath.Join(dir, "nix", "store")},
	}
	if err := os.MkdirAll(g.c.Store, 0o755); err != nil {
		return nil, fmt.Errorf("generating closure: %w", err)
	}
	g.corpus = g.text(int(min(corpusSize, max(chunk, o.TotalBytes/64))))

	// Names and references are drawn first so that symlinks can point
	// at referenced paths.
	n := o.SmallPaths + o.LargePaths
	names := strings.Fields(packageNames)
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(g.c.Store, g.hash()+"-"+names[g.rng.IntN(len(names))]+
			fmt.Sprintf("-%d.%d", 1+g.rng.IntN(12), g.rng.IntN(30)))
	}
	g.c.References = g.references(paths, o)
	g.c.sizes = make(map[string]int64, n)
	small := int64(0)
	if o.SmallPaths > 0 {
		small = o.TotalBytes / smallShare / int64(o.SmallPaths)
	}
	for i := range o.SmallPaths {
		if err := g.storePath(paths[i], small, nil); err != nil {
			return nil, err
		}
	}
	large := (o.TotalBytes - g.c.Bytes) / int64(o.LargePaths)
	for i := o.SmallPaths; i < n; i++ {
		// 1–3 large files share most of the path's budget, a few
		// small files the rest.
		k := 1 + g.rng.IntN(3)
		left := large - large/16
		sizes := make([]int64, k)
		for j := range sizes {
			if j == k-1 {
				sizes[j] = left
			} else {
				sizes[j] = left / int64(k) * int64(50+g.rng.IntN(100)) / 100
			}
			left -= sizes[j]
		}
		if err := g.storePath(paths[i], large/16, sizes); err != nil {
			return nil, err
		}
	}
	sort.Strings(paths)
	g.c.Paths = paths
	return g.c, nil
}

// storePath makes one store path: small files worth about budget bytes in
// a few subdirectories, the given large files, and now and then an
// executable, symlinks, a hard link, an empty file and an empty directory.
func (g *generator) storePath(p string, budget int64, large []int64) error {
	before := g.c.Bytes
	defer func() { g.c.sizes[p] = g.c.Bytes - before }()
	name := filepath.Base(p)[33:]
	dirs := []string{"bin", "lib", "share/doc/" + name, "share/" + name + "/data", "etc"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(p, d), 0o755); err != nil {
			return fmt.Errorf("generating store path %s: %w", p, err)
		}
	}
	exe := filepath.Join(p, "bin", name)
	if err := g.file(exe, smallMin+int64(g.rng.IntN(smallMax)), false, 0o755); err != nil {
		return err
	}
	for i, used := 0, int64(0); used < budget; i++ {
		size := g.smallSize()
		d := dirs[1+g.rng.IntN(len(dirs)-1)]
		f := filepath.Join(p, d, fmt.Sprintf("f%03d.%s", i, []string{"txt", "so", "py", "h", "dat"}[g.rng.IntN(5)]))
		if err := g.file(f, size, g.rng.Float64() < textFraction, 0o644); err != nil {
			return err
		}
		used += size
	}
	for i, size := range large {
		f := filepath.Join(p, "lib", fmt.Sprintf("lib%s-%d.so", name, i))
		if err := g.file(f, size, i%2 == 0, 0o644); err != nil {
			return err
		}
	}
	var links [][2]string // target, link name
	if g.rng.IntN(4) == 0 {
		links = append(links, [2]string{"lib" + name + ".so.1", filepath.Join(p, "lib", "lib"+name+".so")})
		if err := g.file(filepath.Join(p, "lib", "lib"+name+".so.1"), g.smallSize(), false, 0o644); err != nil {
			return err
		}
	}
	if refs := g.c.References[p]; len(refs) > 0 && g.rng.IntN(3) == 0 {
		other := refs[g.rng.IntN(len(refs))]
		links = append(links, [2]string{filepath.Join(other, "bin"), filepath.Join(p, "bin", "other")})
	}
	for _, l := range links {
		if err := os.Symlink(l[0], l[1]); err != nil {
			return fmt.Errorf("generating store path %s: %w", p, err)
		}
		g.c.Symlinks++
	}
	if g.rng.IntN(8) == 0 && len(g.files) > 0 {
		// auto-optimise-store makes hard links across store paths.
		src := g.files[g.rng.IntN(len(g.files))]
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("generating store path %s: %w", p, err)
		}
		if err := os.Link(src, filepath.Join(p, "share", "linked")); err != nil {
			return fmt.Errorf("generating store path %s: %w", p, err)
		}
		g.c.HardLinks++
		g.c.Files++
		g.c.Bytes += fi.Size()
	}
	if g.rng.IntN(8) == 0 {
		if err := g.file(filepath.Join(p, "etc", "empty"), 0, true, 0o644); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(p, "share", "empty"), 0o755); err != nil {
			return fmt.Errorf("generating store path %s: %w", p, err)
		}
	}
	return nil
}

// references draws the reference graph. Ranks order the paths: the large
// ones first, then the small ones; a path refers only to paths of lower
// rank, so there are no cycles. Each small path refers to 1–3 large paths,
// low ranks more often, and to up to 3 earlier small paths; each large
// path to up to 2 earlier large paths.
func (g *generator) references(paths []string, o Options) map[string][]string {
	order := append(append([]string(nil), paths[o.SmallPaths:]...), paths[:o.SmallPaths]...)
	refs := make(map[string][]string, len(paths))
	for r, p := range order {
		set := map[string]bool{}
		if r < o.LargePaths {
			for range g.rng.IntN(3) {
				if r > 0 {
					set[order[g.rng.IntN(r)]] = true
				}
			}
		} else {
			for range 1 + g.rng.IntN(3) {
				set[order[g.rng.IntN(g.rng.IntN(o.LargePaths)+1)]] = true
			}
			for range g.rng.IntN(4) {
				if r > o.LargePaths {
					set[order[o.LargePaths+g.rng.IntN(r-o.LargePaths)]] = true
				}
			}
		}
		list := make([]string, 0, len(set))
		for q := range set {
			list = append(list, q)
		}
		sort.Strings(list)
		refs[p] = list
	}
	return refs
}

// smallSize is log-uniform in [smallMin, smallMax]: most small files are
// a few KiB.
func (g *generator) smallSize() int64 {
	lo, hi := math.Log(smallMin), math.Log(smallMax)
	return int64(math.Exp(lo + g.rng.Float64()*(hi-lo)))
}

// file writes size bytes, cut from the text corpus or random.
func (g *generator) file(name string, size int64, text bool, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("generating file %s: %w", name, err)
	}
	off := g.rng.IntN(len(g.corpus))
	for left := size; left > 0; {
		var b []byte
		if text {
			b = g.corpus[off:min(len(g.corpus), off+int(min(left, chunk)))]
			off = 0
		} else {
			b = g.buf[:min(left, chunk)]
			_, _ = g.src.Read(b) // never fails
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return fmt.Errorf("generating file %s: %w", name, err)
		}
		left -= int64(len(b))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("generating file %s: %w", name, err)
	}
	g.files = append(g.files, name)
	g.c.Files++
	g.c.Bytes += size
	return nil
}

// text makes n bytes of words drawn from a Zipf-distributed vocabulary, in
// lines: compresses about as well as source code and documentation.
func (g *generator) text(n int) []byte {
	vocab := make([]string, 4096)
	for i := range vocab {
		w := make([]byte, 1+g.rng.IntN(10))
		for j := range w {
			w[j] = byte('a' + g.rng.IntN(26))
		}
		vocab[i] = string(w)
	}
	z := rand.NewZipf(g.rng, 1.1, 1, uint64(len(vocab)-1))
	out := make([]byte, 0, n+16)
	col := 0
	for len(out) < n {
		w := vocab[z.Uint64()]
		out = append(out, w...)
		col += len(w) + 1
		if col > 72 {
			out = append(out, '\n')
			col = 0
		} else {
			out = append(out, ' ')
		}
	}
	return out[:n]
}

// hash is a random 32-character Nix base32 store path hash.
func (g *generator) hash() string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = nixBase32[g.rng.IntN(len(nixBase32))]
	}
	return string(b)
}

// Variant copies store path p to a new store path that stands for p
// rebuilt after a one-file change: the same name with the last character
// of its hash changed (so that it sorts where p sorts and popularity
// layering, which breaks ties by path, plans the same layers), and n
// appended to its main executable bin/<name>. Symlinks are copied as
// links, hard links as files. It returns the new path, which is not added
// to c.Paths; see WriteGraphReplacing.
func (c *Closure) Variant(p string, n int) (string, error) {
	base := filepath.Base(p)
	if !strings.Contains(base, "-") || len(base) < 33 {
		return "", fmt.Errorf("variant of %s: not a store path name", p)
	}
	i := strings.IndexByte(nixBase32, base[31])
	var q string
	for k := 1; k < len(nixBase32); k++ {
		b := []byte(base)
		b[31] = nixBase32[(i+n*k)%len(nixBase32)]
		q = filepath.Join(filepath.Dir(p), string(b))
		if _, err := os.Lstat(q); os.IsNotExist(err) {
			break
		}
		q = ""
	}
	if q == "" {
		return "", fmt.Errorf("variant %d of %s: no free name", n, p)
	}
	err := filepath.WalkDir(p, func(src string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(q, strings.TrimPrefix(src, p))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(dst, fi.Mode().Perm()|0o700)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		default:
			// Streamed, not read whole: a child's peak RSS as the
			// benchmark reads it starts from this process's.
			return copyFile(src, dst, fi.Mode().Perm())
		}
	})
	if err != nil {
		return "", fmt.Errorf("variant %d of %s: %w", n, p, err)
	}
	exe := filepath.Join(q, "bin", base[33:])
	f, err := os.OpenFile(exe, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", fmt.Errorf("variant %d of %s: %w", n, p, err)
	}
	_, err = fmt.Fprintf(f, "\nvariant %d\n", n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("variant %d of %s: %w", n, p, err)
	}
	return q, nil
}

// WriteGraphReplacing is WriteGraph with each store path that is a key of
// replace swapped for its value, as a path and in references; the new
// paths take the old ones' sizes.
func (c *Closure) WriteGraphReplacing(file string, replace map[string]string) error {
	sub := func(p string) string {
		if q, ok := replace[p]; ok {
			return q
		}
		return p
	}
	d := &Closure{References: map[string][]string{}, sizes: map[string]int64{}}
	for _, p := range c.Paths {
		d.Paths = append(d.Paths, sub(p))
		refs := make([]string, 0, len(c.References[p]))
		for _, r := range c.References[p] {
			refs = append(refs, sub(r))
		}
		sort.Strings(refs)
		d.References[sub(p)] = refs
		d.sizes[sub(p)] = c.sizes[p]
	}
	sort.Strings(d.Paths)
	return d.WriteGraph(file)
}

// Referrers returns, for each store path, how many paths refer to it.
func (c *Closure) Referrers() map[string]int {
	out := make(map[string]int, len(c.Paths))
	for _, p := range c.Paths {
		out[p] += 0
		for _, r := range c.References[p] {
			out[r]++
		}
	}
	return out
}

// copyFile copies src to a new file dst with mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
