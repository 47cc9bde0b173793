package layer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// DefaultVerifyBelow is CacheOptions.VerifyBelow's default: layers whose tar
// is smaller than 1 MiB are compressed on every build, and a cache entry for
// them is only compared with the result. Compressing them costs
// milliseconds.
const DefaultVerifyBelow = 1 << 20

// cacheVersion names the layout of a cache directory; a new layout gets a
// new subdirectory, so that nixoci versions sharing a directory do not read
// each other's files.
const cacheVersion = "nixoci-digests-v1"

// Cache memoises layer compression in a directory shared by builds: for a
// tar (its diff_id and size) and a compressor identity (algorithm, level,
// library@version) it records the compressed blob's digest and size. A
// build still streams and hashes every layer's tar, which is cheap; only a
// layer whose tar the cache does not know is compressed. A build with a
// Cache writes the same descriptor as one without.
//
// Entries are files written once, atomically (a complete temporary file is
// linked into place), and carry a checksum and their full key, so readers
// never see a partial entry and a damaged one is a miss. Any number of
// processes may share one directory. Only layers whose compressor
// reproduces its recorded identity (compress.Reproduces) use the cache.
//
// The cache is trusted to hold what its writers computed; see
// CacheOptions.VerifyBelow, the streamed check of Layer.Compressed and
// README.md ("The digest cache") for what a wrong entry can and cannot do.
type Cache struct {
	dir         string // the cacheVersion subdirectory
	verifyBelow int64
	log         logrus.FieldLogger
	// twoPass makes every cached layer hash its tar first and compress it
	// in a second stream on a miss, ignoring hints: the simpler design,
	// kept for measuring against (see cache_bench_test.go).
	twoPass bool

	layers, hits, compressed, checked, written, rejected, wrong, restreamed atomic.Int64

	warnOnce sync.Once
}

// CacheOptions configure OpenCache.
type CacheOptions struct {
	// Create makes the directory (and its parents) when it does not exist;
	// otherwise a missing directory is an error.
	Create bool
	// VerifyBelow is the tar size under which a layer is compressed even
	// when the cache knows it, and the entry compared with the result (a
	// wrong entry is reported, counted in Stats.Wrong, and replaced).
	// 0 means DefaultVerifyBelow; a negative value compresses nothing the
	// cache knows.
	VerifyBelow int64
	// Log receives warnings about damaged or wrong entries and entries that
	// could not be written. Default: discarded.
	Log logrus.FieldLogger
}

// CacheStats count what a Cache did, over every layer described with it.
type CacheStats struct {
	// Layers is how many layers were described with the cache.
	Layers int64
	// Hits took their compressed digest from the cache without compressing.
	Hits int64
	// Compressed were compressed: the cache did not know them, or they
	// were below VerifyBelow. Layers = Hits + Compressed.
	Compressed int64
	// Checked of the compressed had an entry, and it agreed.
	Checked int64
	// Written entries were added (or replaced a damaged or wrong one).
	Written int64
	// Rejected entries were unreadable, truncated, failed their checksum or
	// named another key: each was treated as missing.
	Rejected int64
	// Wrong entries disagreed with a fresh compression of the same tar.
	Wrong int64
	// Restreamed layers were expected in the cache but were not, so their
	// tar was streamed a second time to compress it.
	Restreamed int64
}

// String is a one-line summary, such as "20 layers: 19 from the cache, 1 compressed".
func (s CacheStats) String() string {
	out := fmt.Sprintf("%d layers: %d from the cache, %d compressed", s.Layers, s.Hits, s.Compressed)
	if s.Checked > 0 {
		out += fmt.Sprintf(" (%d of them small and checked against their entry)", s.Checked)
	}
	for _, x := range []struct {
		n    int64
		what string
	}{
		{s.Written, "entries written"},
		{s.Rejected, "damaged entries ignored"},
		{s.Wrong, "WRONG entries replaced"},
		{s.Restreamed, "streamed twice"},
	} {
		if x.n > 0 {
			out += fmt.Sprintf(", %d %s", x.n, x.what)
		}
	}
	return out
}

// OpenCache opens the cache in dir, making its subdirectories when needed.
func OpenCache(dir string, o CacheOptions) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("opening digest cache: no directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening digest cache %s: %w", dir, err)
	}
	if o.Create {
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("creating digest cache %s: %w", abs, err)
		}
	}
	root, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("opening digest cache %s: %w (create the directory first)", abs, err)
	}
	if !root.IsDir() {
		return nil, fmt.Errorf("opening digest cache %s: not a directory", abs)
	}
	c := &Cache{dir: filepath.Join(abs, cacheVersion), verifyBelow: o.VerifyBelow, log: logs.Or(o.Log)}
	if c.verifyBelow == 0 {
		c.verifyBelow = DefaultVerifyBelow
	}
	// The subdirectories get the root's permissions, so that a cache
	// shared by a group (set-group-ID, group-writable) stays shared.
	for _, d := range []string{c.dir, c.entries(), c.hints()} {
		if err := os.Mkdir(d, 0o700); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return nil, fmt.Errorf("opening digest cache %s: %w", abs, err)
		}
		if err := os.Chmod(d, root.Mode()&(fs.ModePerm|fs.ModeSetgid)); err != nil {
			return nil, fmt.Errorf("opening digest cache %s: %w", abs, err)
		}
	}
	return c, nil
}

// Dir is the directory the cache was opened in.
func (c *Cache) Dir() string { return filepath.Dir(c.dir) }

// Stats returns what the cache did so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{
		Layers:     c.layers.Load(),
		Hits:       c.hits.Load(),
		Compressed: c.compressed.Load(),
		Checked:    c.checked.Load(),
		Written:    c.written.Load(),
		Rejected:   c.rejected.Load(),
		Wrong:      c.wrong.Load(),
		Restreamed: c.restreamed.Load(),
	}
}

func (c *Cache) entries() string { return filepath.Join(c.dir, "entries") }
func (c *Cache) hints() string   { return filepath.Join(c.dir, "hints") }

// cacheKey names one compression: a tar and the compressor applied to it.
type cacheKey struct {
	DiffID           digest.Digest         `json:"diff_id"`
	UncompressedSize int64                 `json:"uncompressed_size"`
	Compressor       descriptor.Compressor `json:"compressor"`
}

// entry is the content of an entry file: its key and the compressed blob.
type entry struct {
	cacheKey
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// hint is the content of a hint file: the tar a spec's paths gave last.
type hint struct {
	Spec             string        `json:"spec"`
	DiffID           digest.Digest `json:"diff_id"`
	UncompressedSize int64         `json:"uncompressed_size"`
}

func (k cacheKey) file(c *Cache) string {
	id := fmt.Sprintf("%s\x00%d\x00%s\x00%d\x00%s", k.DiffID, k.UncompressedSize, k.Compressor.Algorithm, k.Compressor.Level, k.Compressor.Library)
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(c.entries(), hex.EncodeToString(sum[:]))
}

// lookup returns the blob recorded for k; found is false when there is no
// entry, or only a damaged one (counted and reported).
func (c *Cache) lookup(k cacheKey) (blob Sum, found, damaged bool) {
	blob, err := c.read(k)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Sum{}, false, false
	case err != nil:
		c.rejected.Add(1)
		c.log.Warnf("digest cache: ignoring the damaged entry %s: %v", k.file(c), err)
		return Sum{}, false, true
	}
	return blob, true, false
}

// read returns the blob recorded for k, or an error: fs.ErrNotExist when
// there is no entry, another when it is damaged.
func (c *Cache) read(k cacheKey) (Sum, error) {
	var e entry
	err := readSealed(k.file(c), &e)
	switch {
	case err != nil:
		return Sum{}, err
	case e.cacheKey != k:
		return Sum{}, fmt.Errorf("it is the entry of another key (%s, %d bytes, %s)", e.DiffID, e.UncompressedSize, DescribeCompressor(e.Compressor))
	case e.Digest.Validate() != nil || e.Size <= 0:
		return Sum{}, fmt.Errorf("it records no valid digest and size")
	}
	return Sum{e.Digest, e.Size}, nil
}

// record writes the entry of k. An existing entry is left as it is (entries
// are written once) unless replace is set: the existing one was damaged or
// proved wrong.
func (c *Cache) record(k cacheKey, blob Sum, replace bool) {
	err := writeSealed(k.file(c), entry{k, blob.Digest, blob.Size}, replace)
	switch {
	case err == nil:
		c.written.Add(1)
	case errors.Is(err, fs.ErrExist):
		// Another build wrote it first: entries are written once.
	default:
		c.warnOnce.Do(func() {
			c.log.Warnf("digest cache: cannot add entries (later builds will compress these layers again): %v", err)
		})
	}
}

// specKey identifies what a spec's tar is made of: its store paths and
// their rules. Store paths do not change, so the same spec gives the same
// tar from the same tar writer; a hint is still only a guess, checked by
// hashing the tar.
func specKey(spec Spec) string {
	paths := make([]descriptor.Path, len(spec.Paths))
	for i, p := range spec.Paths {
		p.Digest, p.Fingerprints = "", ""
		paths[i] = p
	}
	data, err := json.Marshal(paths)
	if err != nil {
		return "" // not reached: paths are plain data
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// hintFor returns the tar a spec gave last time, if recorded.
func (c *Cache) hintFor(key string) (Sum, bool) {
	if key == "" {
		return Sum{}, false
	}
	var h hint
	if err := readSealed(filepath.Join(c.hints(), key), &h); err != nil || h.Spec != key || h.DiffID.Validate() != nil {
		return Sum{}, false
	}
	return Sum{h.DiffID, h.UncompressedSize}, true
}

// recordHint notes the tar a spec gave. Hints are replaced, not written
// once: a new tar writer changes the tar of the same spec.
func (c *Cache) recordHint(key string, tar Sum) {
	if key == "" {
		return
	}
	if old, ok := c.hintFor(key); ok && old == tar {
		return
	}
	if err := writeSealed(filepath.Join(c.hints(), key), hint{key, tar.Digest, tar.Size}, true); err != nil {
		c.warnOnce.Do(func() {
			c.log.Warnf("digest cache: cannot add hints: %v", err)
		})
	}
}

// A sealed file is one line of JSON and a line "sha256 HEX" over it.

func readSealed(file string, v any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	body, sumLine, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return errors.New("it is truncated")
	}
	want := sha256.Sum256(body)
	if string(bytes.TrimSuffix(sumLine, []byte("\n"))) != "sha256 "+hex.EncodeToString(want[:]) || !bytes.HasSuffix(sumLine, []byte("\n")) {
		return errors.New("its checksum does not match its content (truncated or changed)")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("it does not parse: %w", err)
	}
	return nil
}

// writeSealed writes v to file through a complete temporary file in the
// same directory: linked into place (failing with fs.ErrExist when file
// exists), or renamed over it when replace is set. Readers see the old
// file or the new one, never a part.
func writeSealed(file string, v any, replace bool) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	data := append(append(body, '\n'), "sha256 "+hex.EncodeToString(sum[:])+"\n"...)
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	// Read-only for everybody: readers may be other build users.
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if replace {
		return os.Rename(tmp.Name(), file)
	}
	return os.Link(tmp.Name(), file)
}

// cacheable reports whether layers compressed by c can be memoised: a compressor
// that is not "none" and whose bytes this binary reproduces, so that the
// recorded identity really names the bytes.
func cacheable(c compress.Compressor) bool {
	id := c.Identity()
	return id.Algorithm != descriptor.None && compress.Reproduces(id)
}
