package publish

import (
	"fmt"
	"io"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// progressInterval is how often containers/image reports read progress;
// the line reporter ignores those events, so it only bounds their number.
const progressInterval = time.Second

// lineReporter prints one line per blob from containers/image's progress
// events, for output that is not a terminal:
//
//	blob sha256:…: done (1234 bytes)
//	blob sha256:…: skipped: already exists
//
// A layer the destination already has arrives as a "skipped" event. A blob
// that was opened but whose stream the destination never read (the registry
// answered that it has it, as it does for the config) is also one the
// destination already had; that is only certain once the copy succeeded, so
// those lines are printed by finish.
type lineReporter struct {
	w      io.Writer
	events chan types.ProgressProperties
	done   chan struct{}
	unread []types.BlobInfo
}

func newLineReporter(w io.Writer) *lineReporter {
	r := &lineReporter{w: w, events: make(chan types.ProgressProperties), done: make(chan struct{})}
	go r.run()
	return r
}

func (r *lineReporter) run() {
	defer close(r.done)
	for p := range r.events {
		switch p.Event {
		case types.ProgressEventSkipped:
			r.line(p.Artifact, "skipped: already exists")
		case types.ProgressEventDone:
			switch {
			case p.Offset == 0 && p.Artifact.Size != 0:
				r.unread = append(r.unread, p.Artifact)
			case p.Artifact.Size > 0 && p.Offset < uint64(p.Artifact.Size):
				r.line(p.Artifact, fmt.Sprintf("interrupted after %d of %d bytes", p.Offset, p.Artifact.Size))
			default:
				r.line(p.Artifact, fmt.Sprintf("done (%d bytes)", p.Offset))
			}
		}
	}
}

// finish stops the reporter; ok says whether the copy succeeded.
func (r *lineReporter) finish(ok bool) {
	close(r.events)
	<-r.done
	if ok {
		for _, a := range r.unread {
			r.line(a, "skipped: already exists")
		}
	}
}

func (r *lineReporter) line(a types.BlobInfo, status string) {
	fmt.Fprintf(r.w, "%s %s: %s\n", kindOf(a.MediaType), a.Digest, status)
}

// kindOf names a blob "config" or "blob" (layers), as containers/image does.
func kindOf(mediaType string) string {
	switch mediaType {
	case ocispec.MediaTypeImageConfig, manifest.DockerV2Schema2ConfigMediaType:
		return "config"
	}
	return "blob"
}
