package layer

import (
	"fmt"
	"io"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// checkBlob returns rc, the blob of a layer compressed on read, checked
// against the described digest and size: when the tar is as described (rc
// checks that itself) but its compressed bytes are not, the stream ends
// with a *MismatchError instead of io.EOF, so a destination never commits
// the blob. That happens only when the descriptor's compressed digest is
// wrong, as a wrong digest cache entry would make it (see Cache); without
// this check the destination would report its own "digest did not match".
// Uncompressed blobs are the tar, which rc already checks.
func checkBlob(rc io.ReadCloser, d descriptor.Layer) io.ReadCloser {
	if algorithmOf(d) == descriptor.None {
		return rc
	}
	want := Sum{d.Digest, d.Size}
	return verified(rc, rc, d.Digest, d.Size, func(got Sum) error {
		return &MismatchError{
			Index:  -1,
			Digest: d.Digest,
			What:   compareSums(nil, "digest", got, want),
			Detail: fmt.Sprintf("the layer's tar is as described but it compresses (%s) to other bytes: the descriptor's compressed digest is wrong. Was it built with a digest cache holding a wrong entry? Rebuild it without the cache and empty the cache directory (see the trust model of the digest cache in nixoci's README)", DescribeCompressor(d.Compressor)),
		}
	})
}
