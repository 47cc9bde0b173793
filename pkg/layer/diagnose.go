package layer

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// ErrMismatch is wrapped by every *MismatchError.
var ErrMismatch = errors.New("layer does not match its descriptor")

// MismatchError says how a layer's bytes differ from its descriptor and,
// for store path layers, which store path and file changed.
type MismatchError struct {
	// Index is the layer's position in its image, base first, when the
	// caller knows it (pkg/verify sets it); -1 otherwise.
	Index int
	// Digest is the layer's described digest.
	Digest digest.Digest
	// What lists what differs, such as "diff_id sha256:…, described sha256:…".
	What []string
	// Path is the first store path whose share of the stream differs, and
	// File the first entry of it whose bytes, mode or type differ (its tar
	// name). Either may be empty when it cannot be told.
	Path string
	File string
	// Detail says more about Path and File, or what else changed.
	Detail string
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	if e.Index >= 0 {
		fmt.Fprintf(&b, "layer %d (%s): %s", e.Index, e.Digest, strings.Join(e.What, ", "))
	} else {
		fmt.Fprintf(&b, "layer %s: %s", e.Digest, strings.Join(e.What, ", "))
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// Diagnose is the error for a store path layer whose tar came out as got
// (digest and size) instead of its diff_id: it streams the paths once more
// and compares each path's share and each entry's fingerprint with the
// descriptor, to name the store path and the file that changed. An error
// of the second stream (a path that is gone) is returned as it is.
func Diagnose(ctx context.Context, d descriptor.Layer, got digest.Digest, size int64) error {
	m := &MismatchError{Index: -1, Digest: d.Digest, What: compareSums(nil, "diff_id", Sum{got, size}, Sum{d.DiffID, d.UncompressedSize})}
	observed := make([][]tarstream.Entry, len(d.Paths))
	shares, err := tarstream.Write(ctx, io.Discard, d.Paths, tarstream.WithObserver(func(e tarstream.Entry) {
		observed[e.Path] = append(observed[e.Path], e)
	}))
	if err != nil {
		return err
	}
	diagnose(m, d.Paths, shares, observed)
	m.Detail += "; the store changed since the image was built: rebuild the image (`nixoci verify` lists every difference)"
	return m
}

// diagnose names the first store path whose share differs and, from its
// fingerprints, the first entry that differs.
func diagnose(m *MismatchError, paths []descriptor.Path, shares []tarstream.Share, observed [][]tarstream.Entry) {
	var differ []int
	described := 0
	for i, p := range paths {
		if p.Digest == "" {
			continue
		}
		described++
		if shares[i].Digest != p.Digest {
			differ = append(differ, i)
		}
	}
	switch {
	case described == 0:
		m.Detail = "the descriptor has no per-path digests to tell which store path changed"
		return
	case len(differ) == 0:
		m.Detail = "every store path's share matches the descriptor: the layer changed as a whole (paths added, removed or reordered, or the descriptor was edited)"
		return
	}
	i := differ[0]
	m.Path = paths[i].Path
	var b strings.Builder
	fmt.Fprintf(&b, "store path %s", m.Path)
	if n := len(differ) - 1; n > 0 {
		fmt.Fprintf(&b, " (and %d more store paths)", n)
	}
	b.WriteString(": ")
	want, err := base64.StdEncoding.DecodeString(paths[i].Fingerprints)
	if err != nil || len(want)%4 != 0 {
		b.WriteString("its content differs from what was described (no usable fingerprints to name the file)")
		m.Detail = b.String()
		return
	}
	got := observed[i]
	nwant := len(want) / 4
	k := 0
	for k < len(got) && k < nwant && got[k].Fingerprint == binary.BigEndian.Uint32(want[4*k:]) {
		k++
	}
	switch {
	case k < len(got) && k < nwant:
		m.File = got[k].Name
		fmt.Fprintf(&b, "file %s differs from what was described (content, mode or type changed, or an entry before it was added or removed)", m.File)
	case k < len(got):
		m.File = got[k].Name
		fmt.Fprintf(&b, "file %s was not there when the layer was described", m.File)
	case k < nwant && k > 0:
		m.File = got[k-1].Name
		n := nwant - k
		if n == 1 {
			fmt.Fprintf(&b, "the entry after %s was removed since the layer was described", m.File)
		} else {
			fmt.Fprintf(&b, "%d entries after %s were removed since the layer was described", n, m.File)
		}
	case k < nwant:
		fmt.Fprintf(&b, "it had %d entries when described and now has none", nwant)
	default:
		b.WriteString("every entry matches its fingerprint, yet the share's digest differs")
	}
	m.Detail = b.String()
}
