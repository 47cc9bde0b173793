package publish

import (
	"fmt"
	"io"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// progressInterval is how often containers/image reports read progress
// when only the line reporter listens; the stall watchdog asks for more.
const progressInterval = time.Second

// lineReporter prints one line per blob from containers/image's progress
// events, for output that is not a terminal:
//
//	blob sha256:…: done (1234 bytes)
//	blob sha256:…: done: recompressed from gzip to zstd as sha256:… (1100 bytes)
//	blob sha256:…: skipped: already exists
//
// A layer the destination already has arrives as a "skipped" event and is
// printed at once. Whether a blob that was streamed arrived is only known
// once the whole copy succeeded (a "done" event comes also when the
// destination failed it), and what the destination stored is only known
// from the manifest it got: containers/image names the source blob in its
// events and counts the bytes it sent, which differ when it compressed,
// recompressed or decompressed the blob. So those lines are printed by
// finish, from the events and the destination's manifest. A blob that was
// opened but never read (the registry answered that it has it, as it does
// for the config) is one the destination already had.
type lineReporter struct {
	w      io.Writer
	sent   []sentBlob
	unread []types.BlobInfo
}

// sentBlob is a blob containers/image streamed: the source blob, and how
// many bytes went to the destination.
type sentBlob struct {
	src   types.BlobInfo
	bytes uint64
}

func newLineReporter(w io.Writer) *lineReporter {
	return &lineReporter{w: w}
}

// event takes one progress event; events come from one goroutine.
func (r *lineReporter) event(p types.ProgressProperties) {
	switch p.Event {
	case types.ProgressEventSkipped:
		r.line(p.Artifact, "skipped: already exists")
	case types.ProgressEventDone:
		if p.Offset == 0 && p.Artifact.Size != 0 {
			r.unread = append(r.unread, p.Artifact)
			return
		}
		r.sent = append(r.sent, sentBlob{src: p.Artifact, bytes: p.Offset})
	}
}

// finish prints the lines of a successful copy; destManifest is the
// manifest the destination got.
func (r *lineReporter) finish(destManifest []byte) {
	dest, known := destBlobs(destManifest)
	fromSource := map[digest.Digest]bool{}
	for _, s := range r.sent {
		fromSource[s.src.Digest] = true
	}
	for _, s := range r.sent {
		if !known || dest[s.src.Digest] != nil {
			r.line(s.src, fmt.Sprintf("done (%d bytes)", s.bytes))
			continue
		}
		// The destination stored another blob: the one of the sent size
		// that no source blob explains.
		var match *types.BlobInfo
		for d, info := range dest {
			if !fromSource[d] && info.Size == int64(s.bytes) {
				if match != nil {
					match = nil
					break
				}
				match = info
			}
		}
		if match == nil {
			r.line(s.src, fmt.Sprintf("done: stored as a different blob (%d bytes sent)", s.bytes))
			continue
		}
		r.line(s.src, fmt.Sprintf("done: %s as %s (%d bytes)", conversion(compressionOf(s.src.MediaType), compressionOf(match.MediaType)), match.Digest, s.bytes))
	}
	for _, a := range r.unread {
		r.line(a, "skipped: already exists")
	}
}

func (r *lineReporter) line(a types.BlobInfo, status string) {
	fmt.Fprintf(r.w, "%s %s: %s\n", kindOf(a.MediaType), a.Digest, status)
}

// destBlobs returns the config and layers a manifest names, by digest;
// false when it cannot be parsed (then no blob is said to be changed).
func destBlobs(m []byte) (map[digest.Digest]*types.BlobInfo, bool) {
	parsed, err := manifest.FromBlob(m, manifest.GuessMIMEType(m))
	if err != nil {
		return nil, false
	}
	out := map[digest.Digest]*types.BlobInfo{}
	config := parsed.ConfigInfo()
	out[config.Digest] = &config
	for _, l := range parsed.LayerInfos() {
		info := l.BlobInfo
		out[info.Digest] = &info
	}
	return out, true
}

// compressionOf names the compression of a layer media type: gzip, zstd,
// none, or "" when it is not a layer type this knows.
func compressionOf(mediaType string) string {
	switch {
	case strings.HasSuffix(mediaType, "+gzip"), strings.HasSuffix(mediaType, ".tar.gzip"):
		return "gzip"
	case strings.HasSuffix(mediaType, "+zstd"), strings.HasSuffix(mediaType, ".tar.zstd"):
		return "zstd"
	case strings.HasSuffix(mediaType, ".tar"):
		return "none"
	}
	return ""
}

// conversion says what the copy did to a blob compressed as from to store
// it compressed as to.
func conversion(from, to string) string {
	switch {
	case from == "" || to == "":
		return "converted"
	case from == "none":
		return "compressed with " + to
	case to == "none":
		return "decompressed from " + from
	case from == to:
		return "recompressed with " + to
	}
	return "recompressed from " + from + " to " + to
}

// kindOf names a blob "config" or "blob" (layers), as containers/image does.
func kindOf(mediaType string) string {
	switch mediaType {
	case ocispec.MediaTypeImageConfig, manifest.DockerV2Schema2ConfigMediaType:
		return "config"
	}
	return "blob"
}
