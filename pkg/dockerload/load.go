package dockerload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	cimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"

	"github.com/nixoci/nixoci/internal/logs"
)

// Options configure Load. The zero value loads into the daemon named by the
// environment (DOCKER_HOST, or the default socket) and reports nothing.
type Options struct {
	// SourceCtx is the SystemContext used to open the source image; nil is
	// the containers/image default.
	SourceCtx *types.SystemContext
	// Host is the daemon address (e.g. unix:///var/run/docker.sock); empty
	// means the environment's DOCKER_HOST or Docker's default.
	Host string
	// Progress receives one line per layer ("loaded" or "skipped: already
	// exists") and a last line naming the loaded image; nil discards them.
	Progress io.Writer
	// Policy, when set, must allow the source image (its signatures are
	// checked before anything is sent).
	Policy *signature.PolicyContext
	// NoSkip sends every layer even when the daemon has it (for comparison
	// and as the fallback when skipping is not possible).
	NoSkip bool
	// Log receives warnings (every layer is sent after all) and the
	// daemon's own messages (Debugf); nil discards them.
	Log Logger
}

// Logger receives what Load has to say besides its progress lines.
// logrus's loggers satisfy it.
type Logger = logs.Logger

// LayerStatus is what Load did with one layer of the image.
type LayerStatus struct {
	// DiffID is the layer's uncompressed digest and ChainID its Docker
	// layer store key.
	DiffID  digest.Digest
	ChainID digest.Digest
	// Skipped is true when the daemon already had the layer and its bytes
	// were left out of the archive.
	Skipped bool
	// Bytes is how many blob bytes were sent (0 when skipped).
	Bytes int64
}

// Result reports a successful Load.
type Result struct {
	// ImageID is the image ID in the daemon (the config digest).
	ImageID digest.Digest
	// Layers are in image order, base first.
	Layers []LayerStatus
}

// daemon is the part of the Docker client Load uses.
type daemon interface {
	Info(ctx context.Context) (system.Info, error)
	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
}

var (
	// ErrNoTag is wrapped by the error for a destination without a tag.
	ErrNoTag = errors.New("docker-daemon: destination needs a name:tag")
	// ErrUnreachable is wrapped by the error for a daemon that cannot be
	// connected to.
	ErrUnreachable = errors.New("cannot reach the docker daemon")
	// ErrRejected is wrapped by the error for a source the signature
	// policy does not allow.
	ErrRejected = errors.New("rejected by the signature policy")
)

// Load streams the image src into the Docker daemon, tagged as tag. It asks
// the daemon which layer chains it already has and leaves those layers' files
// out of the docker-archive it streams (Docker's loader only opens a layer
// file when it lacks that layer's chain), so layers already loaded by an
// earlier image cost nothing. Nothing is written to disk on this side. An
// image with more layers than the daemon's layer store holds (MaxLayers) is
// refused with a *TooManyLayersError before anything is sent.
func Load(ctx context.Context, src types.ImageReference, tag reference.NamedTagged, opts Options) (*Result, error) {
	if tag == nil {
		return nil, fmt.Errorf("loading %s into docker: %w", transportsString(src), ErrNoTag)
	}
	clientOpts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.Host != "" {
		clientOpts = append(clientOpts, client.WithHost(opts.Host))
	}
	cli, err := client.NewClientWithOpts(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the docker daemon: %w", err)
	}
	defer cli.Close()
	return load(ctx, cli, src, tag, opts)
}

func transportsString(ref types.ImageReference) string {
	if ref == nil {
		return "<nil>"
	}
	return transports.ImageName(ref)
}

// plan is the image as the archive writer needs it.
type plan struct {
	img      types.ImageCloser
	src      types.ImageSource
	config   []byte
	configID digest.Digest
	layers   []types.BlobInfo
	status   []LayerStatus
}

func load(ctx context.Context, cli daemon, srcRef types.ImageReference, tag reference.NamedTagged, opts Options) (*Result, error) {
	name := transportsString(srcRef)
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	log := opts.Log
	if log == nil {
		log = logs.Discard()
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return nil, daemonError(fmt.Sprintf("loading %s into docker", name), err)
	}
	p, err := openPlan(ctx, srcRef, opts.SourceCtx, opts.Policy)
	if err != nil {
		return nil, err
	}
	defer p.img.Close()
	if err := CheckLayerCount(name, len(p.layers), daemonLayerLimit(info), daemonStore); err != nil {
		return nil, err
	}
	skip := !opts.NoSkip
	if skip {
		if ok, why := skippingWorks(info); !ok {
			log.Warnf("loading %s into docker: sending every layer: %s", name, why)
			skip = false
		}
	}
	var have map[digest.Digest]bool
	if skip {
		if have, err = daemonChains(ctx, cli); err != nil {
			return nil, daemonError(fmt.Sprintf("loading %s into docker", name), err)
		}
	}
	res, err := p.send(ctx, cli, tag, have, progress, log)
	if err != nil && len(have) > 0 && isMissingFile(err) {
		// An image that held a skipped layer was removed between the
		// lookup and the load; send everything once more.
		log.Warnf("loading %s into docker: the daemon lost a layer during the load, sending every layer: %v", name, err)
		res, err = p.send(ctx, cli, tag, nil, progress, log)
	}
	if err != nil {
		return nil, daemonError(fmt.Sprintf("loading %s into docker as %s", name, reference.FamiliarString(tag)), err)
	}
	return res, nil
}

// daemonError wraps err, saying what to do when the daemon was not reached.
func daemonError(what string, err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%s: %w: check that dockerd runs and DOCKER_HOST points to it: %w", what, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// openPlan reads the manifest, config and layer list of the source image.
func openPlan(ctx context.Context, srcRef types.ImageReference, sys *types.SystemContext, policy *signature.PolicyContext) (*plan, error) {
	name := transportsString(srcRef)
	src, err := srcRef.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	if policy != nil {
		allowed, err := policy.IsRunningImageAllowed(ctx, cimage.UnparsedInstance(src, nil))
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("loading %s: %w: %w", name, ErrRejected, err)
		}
		if !allowed {
			src.Close()
			return nil, fmt.Errorf("loading %s: %w", name, ErrRejected)
		}
	}
	img, err := cimage.FromSource(ctx, sys, src)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	p := &plan{img: img, src: src}
	fail := func(err error) (*plan, error) {
		img.Close()
		return nil, err
	}
	if p.config, err = img.ConfigBlob(ctx); err != nil {
		return fail(fmt.Errorf("reading config of %s: %w", name, err))
	}
	p.configID = digest.FromBytes(p.config)
	oci, err := img.OCIConfig(ctx)
	if err != nil {
		return fail(fmt.Errorf("reading config of %s: %w", name, err))
	}
	p.layers = img.LayerInfos()
	if len(p.layers) != len(oci.RootFS.DiffIDs) {
		return fail(fmt.Errorf("image %s has %d layers but its config lists %d diff_ids", name, len(p.layers), len(oci.RootFS.DiffIDs)))
	}
	chains := chainIDs(oci.RootFS.DiffIDs)
	for i, d := range oci.RootFS.DiffIDs {
		p.status = append(p.status, LayerStatus{DiffID: d, ChainID: chains[i]})
	}
	return p, nil
}

// skippingWorks tells whether the daemon's loader is the classic one that
// reads a layer file only when it lacks the layer. The containerd image
// store imports every blob named in the archive.
func skippingWorks(info system.Info) (bool, string) {
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && strings.Contains(kv[1], "containerd.snapshotter") {
			return false, "the daemon uses the containerd image store"
		}
	}
	return true, ""
}

func isMissingFile(err error) bool {
	return strings.Contains(err.Error(), "no such file or directory")
}

// send streams one docker-archive into the daemon, leaving out the layers
// whose chain IDs are in have.
func (p *plan) send(ctx context.Context, cli daemon, tag reference.NamedTagged, have map[digest.Digest]bool, progress io.Writer, log Logger) (*Result, error) {
	res := &Result{ImageID: p.configID, Layers: append([]LayerStatus(nil), p.status...)}
	for i := range res.Layers {
		res.Layers[i].Skipped = have[res.Layers[i].ChainID]
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := p.writeArchive(ctx, pw, tag, res, progress)
		pw.CloseWithError(err)
		written <- err
	}()
	resp, err := cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(false))
	if err != nil {
		pr.CloseWithError(err)
		cancel()
		if werr := <-written; werr != nil {
			return nil, werr
		}
		return nil, fmt.Errorf("sending the archive: %w", err)
	}
	derr := readLoadResponse(resp, log)
	pr.CloseWithError(errors.New("the daemon stopped reading"))
	if werr := <-written; werr != nil {
		return nil, werr
	}
	if derr != nil {
		return nil, derr
	}
	fmt.Fprintf(progress, "image %s: loaded as %s\n", p.configID, reference.FamiliarString(tag))
	return res, nil
}

// readLoadResponse drains the daemon's answer and returns the error it reports.
func readLoadResponse(resp image.LoadResponse, log Logger) error {
	defer resp.Body.Close()
	if !resp.JSON {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("reading the daemon's answer: %w", err)
		}
		log.Debugf("docker load: %s", body)
		return nil
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var m loadMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the daemon's answer: %w", err)
		}
		if m.Error != nil {
			return fmt.Errorf("the daemon refused the image: %s", m.Error.Message)
		}
		if m.ErrorText != "" {
			return fmt.Errorf("the daemon refused the image: %s", m.ErrorText)
		}
		if m.Stream != "" {
			log.Debugf("docker load: %s", strings.TrimSpace(m.Stream))
		}
	}
}

// loadMessage is one JSON message of the daemon's load answer.
type loadMessage struct {
	Stream string `json:"stream"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	ErrorText string `json:"error"`
}

// writeArchive writes the docker-archive: the config, the layer files the
// daemon lacks, then manifest.json naming all layers.
func (p *plan) writeArchive(ctx context.Context, w io.Writer, tag reference.NamedTagged, res *Result, progress io.Writer) error {
	aw := newArchiveWriter(w)
	configName, err := aw.config(p.config)
	if err != nil {
		return err
	}
	files := make([]string, 0, len(p.layers))
	for i, info := range p.layers {
		st := &res.Layers[i]
		file := layerFile(st.DiffID)
		files = append(files, file)
		if st.Skipped {
			fmt.Fprintf(progress, "layer %s: skipped: already exists\n", st.DiffID)
			continue
		}
		n, wrote, err := aw.layer(ctx, file, info.Digest, func(ctx context.Context) (io.ReadCloser, int64, error) {
			rc, size, err := p.src.GetBlob(ctx, info, nil)
			if size < 0 {
				size = info.Size
			}
			return rc, size, err
		})
		if err != nil {
			return err
		}
		if !wrote {
			continue
		}
		st.Bytes = n
		fmt.Fprintf(progress, "layer %s: loaded (%d bytes)\n", st.DiffID, n)
	}
	aw.image(configName, []string{reference.FamiliarString(tag)}, files)
	return aw.close()
}
