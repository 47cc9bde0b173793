package verify

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/compress"
	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// ErrMismatch is wrapped by every *MismatchError.
var ErrMismatch = errors.New("layer does not match its descriptor")

// ErrForeign is returned for a nix2container descriptor with store path
// layers: their digests come from another tar writer.
var ErrForeign = errors.New("foreign descriptor")

// Report is the outcome of a successful verification.
type Report struct {
	Layers []LayerReport
}

// LayerReport says what was checked for one layer.
type LayerReport struct {
	Index  int
	Digest digest.Digest
	DiffID digest.Digest
	// CompressedChecked is false when the compressed digest was not
	// checked: this binary's compressor does not reproduce the one that
	// described the layer, so only the uncompressed digest was compared.
	CompressedChecked bool
	// Note explains an unchecked compressed digest.
	Note string
}

// MismatchError says where a layer differs from its descriptor.
type MismatchError struct {
	// Layer is the layer's index, base first; Digest its described digest.
	Layer  int
	Digest digest.Digest
	// What lists what differs, such as "diff_id sha256:…, described sha256:…".
	What []string
	// Path is the first store path whose share of the stream differs, and
	// File the first entry of it whose bytes, mode or type differ (its tar
	// name). Either may be empty when it cannot be told.
	Path string
	File string
	// Detail says more about Path and File.
	Detail string
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "layer %d (%s): %s", e.Layer, e.Digest, strings.Join(e.What, ", "))
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// Image re-streams every layer of img, in parallel, and compares digests and
// sizes with the descriptor. The compressed digest is compared only when
// this binary's compressor reproduces the described one (see the report).
// Mismatches come back as *MismatchError values, joined in layer order;
// other failures (a missing store path) are returned as they are.
func Image(ctx context.Context, img *descriptor.Image) (*Report, error) {
	if img.Foreign {
		for _, l := range img.Layers {
			if len(l.Paths) > 0 {
				return nil, fmt.Errorf("verifying image: %w: it is a nix2container image.json, whose store path layers come from another tar writer; rebuild the descriptor with nixoci to verify it", ErrForeign)
			}
		}
	}
	reports := make([]LayerReport, len(img.Layers))
	errs := make([]error, len(img.Layers))
	// Every layer is checked, so that all mismatches are reported at once.
	if err := parallel.Do(ctx, len(img.Layers), func(ctx context.Context, i int) error {
		reports[i], errs[i] = verifyLayer(ctx, i, img.Layers[i])
		return nil
	}); err != nil {
		return nil, fmt.Errorf("verifying image: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Report{Layers: reports}, nil
}

func verifyLayer(ctx context.Context, i int, l descriptor.Layer) (LayerReport, error) {
	rep := LayerReport{Index: i, Digest: l.Digest, DiffID: l.DiffID}
	if l.Blob != "" {
		return rep, verifyBlob(ctx, i, l, &rep)
	}
	algorithm := l.Compressor.Algorithm
	if algorithm == "" {
		algorithm = descriptor.AlgorithmOf(l.MediaType)
	}
	diff, blob := layer.NewDigester(), layer.NewDigester()
	w := io.Writer(diff)
	var cw io.WriteCloser
	switch {
	case algorithm == descriptor.None:
		rep.CompressedChecked = true
	case compress.Reproduces(l.Compressor):
		c, err := compress.New(algorithm)
		if err != nil {
			return rep, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
		if cw, err = c.NewWriter(blob); err != nil {
			return rep, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
		w = io.MultiWriter(diff, cw)
		rep.CompressedChecked = true
	default:
		c, err := compress.New(algorithm)
		mine := "none"
		if err == nil {
			mine = identity(c.Identity())
		}
		rep.Note = fmt.Sprintf("compressed digest not checked: the layer was compressed by %s and this nixoci has %s; checked the uncompressed digest only", identity(l.Compressor), mine)
		logrus.Warnf("layer %d (%s): %s", i, l.Digest, rep.Note)
	}

	var observed [][]tarstream.Entry
	var shares []tarstream.Share
	switch {
	case len(l.Paths) > 0:
		observed = make([][]tarstream.Entry, len(l.Paths))
		var err error
		shares, err = tarstream.Write(ctx, w, l.Paths, tarstream.WithObserver(func(e tarstream.Entry) {
			observed[e.Path] = append(observed[e.Path], e)
		}))
		if err != nil {
			return rep, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
	case l.Tar != "":
		f, err := os.Open(l.Tar)
		if err != nil {
			return rep, fmt.Errorf("layer %d (%s): reading layer tar: %w", i, l.Digest, err)
		}
		_, err = copyContext(ctx, w, f)
		f.Close()
		if err != nil {
			return rep, fmt.Errorf("layer %d (%s): reading layer tar %s: %w", i, l.Digest, l.Tar, err)
		}
	default:
		return rep, fmt.Errorf("layer %d (%s): it has no paths, tar or blob", i, l.Digest)
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return rep, fmt.Errorf("layer %d (%s): compressing: %w", i, l.Digest, err)
		}
	}

	m := &MismatchError{Layer: i, Digest: l.Digest}
	m.What = compare(m.What, "diff_id", diff.Digest(), l.DiffID, diff.Size(), l.UncompressedSize)
	tarDiffers := len(m.What) > 0
	// A different tar gives a different blob; say it only when the tar matches.
	if !tarDiffers && rep.CompressedChecked && algorithm != descriptor.None {
		m.What = compare(m.What, "digest", blob.Digest(), l.Digest, blob.Size(), l.Size)
	}
	if algorithm == descriptor.None && (l.Digest != l.DiffID || l.Size != l.UncompressedSize) {
		m.What = append(m.What, fmt.Sprintf("digest %s and size %d should equal the diff_id and uncompressed size of an uncompressed layer", l.Digest, l.Size))
	}
	if len(m.What) == 0 {
		return rep, nil
	}
	switch {
	case !tarDiffers:
		m.Detail = fmt.Sprintf("the tar is as described but its compression is not, although the compressor identity (%s) is the same", identity(l.Compressor))
	case l.Tar != "":
		m.Detail = fmt.Sprintf("the layer tar %s changed since it was described", l.Tar)
	default:
		diagnose(m, l.Paths, shares, observed)
	}
	if !rep.CompressedChecked {
		m.Detail += " (" + rep.Note + ")"
	}
	return rep, m
}

func compare(what []string, name string, got, want digest.Digest, gotSize, wantSize int64) []string {
	if got != want {
		what = append(what, fmt.Sprintf("%s %s, described %s", name, got, want))
	}
	if gotSize != wantSize {
		size := "size"
		if name == "diff_id" {
			size = "uncompressed size"
		}
		what = append(what, fmt.Sprintf("%s %d, described %d", size, gotSize, wantSize))
	}
	return what
}

func identity(c descriptor.Compressor) string {
	s := c.Algorithm
	if c.Level != 0 {
		s += fmt.Sprintf(" level %d", c.Level)
	}
	if c.Library != "" {
		s += " (" + c.Library + ")"
	}
	return s
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

func verifyBlob(ctx context.Context, i int, l descriptor.Layer, rep *LayerReport) error {
	f, err := os.Open(l.Blob)
	if err != nil {
		return fmt.Errorf("layer %d (%s): reading layer blob: %w", i, l.Digest, err)
	}
	defer f.Close()
	algorithm := l.Compressor.Algorithm
	if algorithm == "" {
		algorithm = descriptor.AlgorithmOf(l.MediaType)
	}
	blob, diff := layer.NewDigester(), layer.NewDigester()
	zr, err := compress.NewReader(algorithm, io.TeeReader(f, blob))
	if err != nil {
		return fmt.Errorf("layer %d (%s): layer blob %s: %w", i, l.Digest, l.Blob, err)
	}
	defer zr.Close()
	if _, err := copyContext(ctx, diff, zr); err != nil {
		return fmt.Errorf("layer %d (%s): decompressing layer blob %s: %w", i, l.Digest, l.Blob, err)
	}
	if _, err := copyContext(ctx, blob, f); err != nil {
		return fmt.Errorf("layer %d (%s): reading layer blob %s: %w", i, l.Digest, l.Blob, err)
	}
	rep.CompressedChecked = true
	m := &MismatchError{Layer: i, Digest: l.Digest}
	m.What = compare(m.What, "digest", blob.Digest(), l.Digest, blob.Size(), l.Size)
	if l.DiffID != "" {
		m.What = compare(m.What, "diff_id", diff.Digest(), l.DiffID, diff.Size(), l.UncompressedSize)
	}
	if len(m.What) == 0 {
		return nil
	}
	m.Detail = fmt.Sprintf("the layer blob %s changed since it was described", l.Blob)
	return m
}

// copyContext copies r to w in 1 MiB chunks, stopping when ctx is done.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
