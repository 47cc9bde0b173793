package layer

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// How Describe uses a Cache. Hashing a tar is cheap and compressing it is
// not, so a layer the cache knows should be streamed once without its
// compressor, and a layer it does not know once with it; but which is
// which is known only from the diff_id, at the end of the stream. A hint,
// keyed by the layer's paths and rules, records the tar they gave last
// time: when the hint names a tar the cache has an entry for, the first
// stream leaves the compressor out; otherwise it compresses as without a
// cache. Either way the diff_id is computed anew. A wrong guess (the
// hinted tar was not the one streamed, and the real one is unknown) costs
// a second stream to compress. The design that always hashes first and
// compresses on a miss in a second stream (twoPass) pays that second stream
// for every changed layer and on every cold build; cache_bench_test.go
// measures both.

// cachePlan is how one layer uses the cache; the zero value uses none.
type cachePlan struct {
	c    *Cache
	comp compress.Compressor
	key  string
	// compressNow says whether the first stream compresses.
	compressNow bool
	// expected is the hinted tar and its entry, when compressNow is false
	// because of them.
	expectedTar, expectedBlob Sum
}

// plan decides whether the first stream of spec compresses with comp. It
// is called on a nil *Cache too.
func (c *Cache) plan(spec Spec, comp compress.Compressor) cachePlan {
	if c == nil || !cacheable(comp) {
		return cachePlan{compressNow: true}
	}
	p := cachePlan{c: c, comp: comp, key: specKey(spec), compressNow: true}
	if c.twoPass {
		p.compressNow = false
		return p
	}
	tar, ok := c.hintFor(p.key)
	if !ok || c.small(tar.Size) {
		return p
	}
	// Quietly: a damaged entry is reported once, when the layer is done.
	if blob, err := c.read(cacheKey{tar.Digest, tar.Size, comp.Identity()}); err == nil {
		p.compressNow, p.expectedTar, p.expectedBlob = false, tar, blob
	}
	return p
}

// small says whether a tar of size bytes is compressed on every build.
func (c *Cache) small(size int64) bool { return c.verifyBelow > 0 && size < c.verifyBelow }

// complete fills in l's blob digest and size when the first stream did not
// compress (from the cache, or by compressing a second stream from
// restream), checks what the cache says against what was compressed, and
// records what is new. l's diff_id and uncompressed size are final.
func (p cachePlan) complete(ctx context.Context, l *descriptor.Layer, compressed bool, restream func(context.Context, io.Writer) error) error {
	c := p.c
	if c == nil {
		return nil
	}
	c.layers.Add(1)
	tar := Sum{l.DiffID, l.UncompressedSize}
	k := cacheKey{l.DiffID, l.UncompressedSize, p.comp.Identity()}
	var (
		known          Sum
		looked         bool
		found, damaged bool
	)
	if !compressed {
		if p.expectedTar == tar {
			known, found, looked = p.expectedBlob, true, true
		} else {
			known, found, damaged = c.lookup(k)
			looked = true
		}
		if found && !c.small(tar.Size) {
			c.hits.Add(1)
			l.Digest, l.Size = known.Digest, known.Size
			c.recordHint(p.key, tar)
			return nil
		}
		c.restreamed.Add(1)
		blob, err := compressAgain(ctx, p.comp, tar, restream)
		if err != nil {
			return err
		}
		l.Digest, l.Size = blob.Digest, blob.Size
	}
	c.compressed.Add(1)
	blob := Sum{l.Digest, l.Size}
	if !looked {
		known, found, damaged = c.lookup(k)
	}
	switch {
	case found && known == blob:
		c.checked.Add(1)
	case found:
		c.wrong.Add(1)
		c.log.Warnf("digest cache: the entry %s was WRONG: it says the tar %s (%d bytes) compresses with %s to %s (%d bytes), but it compresses to %s (%d bytes); replaced it. Something wrote a wrong entry into the cache: see the digest cache's trust model in nixoci's README",
			k.file(c), tar.Digest, tar.Size, DescribeCompressor(k.Compressor), known.Digest, known.Size, blob.Digest, blob.Size)
		c.record(k, blob, true)
	default:
		c.record(k, blob, damaged)
	}
	c.recordHint(p.key, tar)
	return nil
}

// compressAgain compresses a second stream of a layer's tar, which must be
// tar again.
func compressAgain(ctx context.Context, comp compress.Compressor, tar Sum, restream func(context.Context, io.Writer) error) (Sum, error) {
	diff, blob := NewDigester(), NewDigester()
	cw, err := comp.NewWriter(blob)
	if err != nil {
		return Sum{}, err
	}
	err = restream(ctx, io.MultiWriter(diff, cw))
	if cerr := cw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Sum{}, err
	}
	if got := diff.Sum(); got != tar {
		return Sum{}, fmt.Errorf("the layer's tar changed between two reads (%s, %d bytes, then %s, %d bytes): a store path changed while it was read", tar.Digest, tar.Size, got.Digest, got.Size)
	}
	return blob.Sum(), nil
}

// restreamer returns how to write spec's tar a second time: from the tar
// file being written (tmp, complete by then), else from the store.
func restreamer(spec Spec, tmp *os.File) func(context.Context, io.Writer) error {
	if tmp != nil {
		return func(ctx context.Context, w io.Writer) error {
			fi, err := tmp.Stat()
			if err != nil {
				return fmt.Errorf("reading back layer tar %s: %w", tmp.Name(), err)
			}
			if _, err := copyContext(ctx, w, io.NewSectionReader(tmp, 0, fi.Size())); err != nil {
				return fmt.Errorf("reading back layer tar %s: %w", tmp.Name(), err)
			}
			return nil
		}
	}
	return func(ctx context.Context, w io.Writer) error {
		_, err := tarstream.Write(ctx, w, spec.Paths, tarstream.WithoutShares())
		return err
	}
}
