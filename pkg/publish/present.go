package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/docker/docker/client"
)

// served is the manifest a nix: source gives a destination: the image's,
// or for an index the index itself (destinations that hold lists) or the
// instance chosen for this machine (those that do not).
type served struct {
	src types.ImageSource
	// manifest is what the destination is sent as its top-level
	// manifest; digest is its digest.
	manifest []byte
	digest   digest.Digest
	// instances are the manifests an index lists, by digest (nil for a
	// single image).
	instances map[digest.Digest][]byte
	// chosen is the instance digest picked for a destination without
	// lists, or "".
	chosen digest.Digest
}

// openServed opens src and reads the manifest the destination will get.
// all says whether the destination takes a whole index. The caller must
// close s.src.
func openServed(ctx context.Context, src types.ImageReference, sys *types.SystemContext, all bool) (*served, error) {
	is, err := src.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	s := &served{src: is}
	top, mime, err := is.GetManifest(ctx, nil)
	if err != nil {
		is.Close()
		return nil, err
	}
	s.manifest = top
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(top, mime)
		if err != nil {
			is.Close()
			return nil, err
		}
		s.instances = map[digest.Digest][]byte{}
		for _, d := range list.Instances() {
			m, _, err := is.GetManifest(ctx, &d)
			if err != nil {
				is.Close()
				return nil, err
			}
			s.instances[d] = m
		}
		if !all {
			if s.chosen, err = list.ChooseInstance(sys); err != nil {
				is.Close()
				return nil, err
			}
			s.manifest = s.instances[s.chosen]
		}
	}
	s.digest = digest.FromBytes(s.manifest)
	return s, nil
}

// layerCompressors returns every layer the destination gets, with its
// compression as containers/image's blob-info cache names it.
func (s *served) layerCompressors() map[digest.Digest]string {
	out := map[digest.Digest]string{}
	for _, m := range s.images() {
		_, layers, err := blobs(m)
		if err != nil {
			continue
		}
		for _, l := range layers {
			out[l.Digest] = cacheCompressor(l.MediaType)
		}
	}
	return out
}

// images returns the image manifests the destination gets: the one
// image, each instance of an index, or the chosen instance.
func (s *served) images() [][]byte {
	if s.instances == nil || s.chosen != "" {
		return [][]byte{s.manifest}
	}
	out := make([][]byte, 0, len(s.instances))
	for _, m := range s.instances {
		out = append(out, m)
	}
	return out
}

// blobs returns the config and layers of an image manifest.
func blobs(m []byte) (config types.BlobInfo, layers []types.BlobInfo, err error) {
	parsed, err := manifest.FromBlob(m, manifest.GuessMIMEType(m))
	if err != nil {
		return types.BlobInfo{}, nil, err
	}
	for _, l := range parsed.LayerInfos() {
		layers = append(layers, l.BlobInfo)
	}
	return parsed.ConfigInfo(), layers, nil
}

// manifestCheckTimeout bounds the manifest check of a registry: a few
// small requests.
const manifestCheckTimeout = 30 * time.Second

// presence is what a destination holds of the manifest a copy would write.
type presence int

const (
	// absent: the destination lacks it, or could not say; copy.
	absent presence = iota
	// tagged: the reference already names it; nothing to do.
	tagged
	// untagged: the destination holds it but the reference names another
	// manifest or none; only the tag has to be written.
	untagged
)

// skipPresent asks the destination, before any blob moves, whether it
// already holds the manifest this copy would write: a registry by HEAD on
// the tag, then on the digest; an oci: layout by its index.json;
// containers-storage by the manifest of the image the reference names.
// When it does (tagging it first if the reference names another
// manifest), every blob is there too, the report says so, and it returns
// true. It returns false, to let the full copy run, whenever it is not
// sure: on any failure, for a source other than nix:, a copy that
// recompresses, or a source the signature policy rejects (the full copy
// then fails with the policy's message).
func (c *copier) skipPresent(ctx context.Context, s *served) bool {
	if s == nil || c.opts.DestCompressFormat != "" {
		return false
	}
	if !allowed(ctx, c.policy, s) {
		return false
	}
	var p presence
	switch c.dest.Transport().Name() {
	case docker.Transport.Name():
		// A registry that does not answer costs the check at most
		// checkTimeout (or the stall timeout, if shorter); the copy then
		// runs under its own watchdog.
		timeout := manifestCheckTimeout
		if st := *c.opts.StallTimeout; st > 0 && st < timeout {
			timeout = st
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		p = c.registryHas(cctx, s)
	case layout.Transport.Name():
		p = layoutHas(c.dest, s)
	case "containers-storage":
		p = c.storageHas(ctx, s)
	}
	switch p {
	case tagged:
		c.reportPresent(s, fmt.Sprintf("already in %s, nothing copied", refString(c.dest)))
		return true
	case untagged:
		if err := c.tag(ctx, s); err != nil {
			c.opts.Log.Debugf("manifest check: tagging %s: %v", refString(c.dest), err)
			return false
		}
		c.reportPresent(s, fmt.Sprintf("already in the repository, tagged %s", refString(c.dest)))
		return true
	}
	return false
}

// allowed runs the signature policy on what would be copied.
func allowed(ctx context.Context, policy *signature.PolicyContext, s *served) bool {
	unparsed := []types.UnparsedImage{image.UnparsedInstance(s.src, nil)}
	if s.chosen != "" {
		unparsed = append(unparsed, image.UnparsedInstance(s.src, &s.chosen))
	}
	for _, u := range unparsed {
		if ok, err := policy.IsRunningImageAllowed(ctx, u); !ok || err != nil {
			return false
		}
	}
	return true
}

// registryHas asks the registry with at most two HEAD requests (and the
// API version check containers/image makes before each): does the tag
// name the manifest, and if not, does the repository hold it by digest?
// A registry holds every blob a manifest it accepted names, so then the
// copy needs no blob.
func (c *copier) registryHas(ctx context.Context, s *served) presence {
	named := c.dest.DockerReference()
	if named == nil {
		return absent
	}
	got, err := docker.GetDigest(ctx, c.destSys, c.dest)
	switch {
	case err == nil && got == s.digest:
		return tagged
	case err != nil && !answered(err):
		// Unreachable, TLS, …: the copy says it better.
		c.opts.Log.Debugf("manifest check of %s: %v", refString(c.dest), err)
		return absent
	}
	if _, isDigest := named.(reference.Digested); isDigest {
		return absent
	}
	byDigest, err := reference.WithDigest(reference.TrimNamed(named), s.digest)
	if err != nil {
		return absent
	}
	ref, err := docker.NewReference(byDigest)
	if err != nil {
		return absent
	}
	if got, err = docker.GetDigest(ctx, c.destSys, ref); err != nil || got != s.digest {
		return absent
	}
	return untagged
}

// answered tells whether err is a registry's answer (a status such as 404)
// rather than a failure to get one.
func answered(err error) bool {
	var ue *url.Error
	var ne net.Error
	return !errors.As(err, &ue) && !errors.As(err, &ne)
}

// tag writes the manifest under the destination reference: the manifest
// and its blobs are already in the repository.
func (c *copier) tag(ctx context.Context, s *served) error {
	d, err := c.dest.NewImageDestination(ctx, c.destSys)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.PutManifest(ctx, s.manifest, nil); err != nil {
		return err
	}
	return d.Commit(ctx, image.UnparsedInstance(s.src, nil))
}

// layoutHas reads an oci: layout's index.json: present when an entry with
// the manifest's digest carries the reference's name (or, for a reference
// without a name, any entry has the digest) and every blob it names is in
// the layout with its size. Another name or a missing blob is left to the
// copy, which is local and reuses the blobs that are there.
func layoutHas(ref types.ImageReference, s *served) presence {
	dir, name, _ := strings.Cut(ref.StringWithinTransport(), ":")
	data, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return absent
	}
	var index ocispec.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return absent
	}
	for _, d := range index.Manifests {
		if d.Digest != s.digest || (name != "" && d.Annotations[ocispec.AnnotationRefName] != name) {
			continue
		}
		if layoutHolds(dir, s) {
			return tagged
		}
		return absent
	}
	return absent
}

// layoutHolds checks that every blob of s is in the layout dir.
func layoutHolds(dir string, s *served) bool {
	has := func(d digest.Digest, size int64) bool {
		if d.Validate() != nil {
			return false
		}
		fi, err := os.Stat(filepath.Join(dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
		return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
	}
	if !has(s.digest, int64(len(s.manifest))) {
		return false
	}
	for _, m := range s.images() {
		if s.instances != nil && !has(digest.FromBytes(m), int64(len(m))) {
			return false
		}
		config, layers, err := blobs(m)
		if err != nil || !has(config.Digest, config.Size) {
			return false
		}
		for _, l := range layers {
			if !has(l.Digest, l.Size) {
				return false
			}
		}
	}
	return true
}

// storageHas opens the image the containers-storage reference names and
// compares its manifest.
func (c *copier) storageHas(ctx context.Context, s *served) presence {
	is, err := c.dest.NewImageSource(ctx, c.destSys)
	if err != nil {
		return absent
	}
	defer is.Close()
	m, _, err := is.GetManifest(ctx, nil)
	if err != nil || digest.FromBytes(m) != s.digest {
		return absent
	}
	return tagged
}

// daemonHas asks the Docker daemon for the image the tag names: when its
// ID is the image's config digest (the classic image store) or its
// manifest digest (the containerd image store), the image is loaded under
// that tag already, and nothing is sent. Any failure leaves it to the
// load, which reports it.
func daemonHas(ctx context.Context, s *served, tag reference.NamedTagged, opts Options) bool {
	config, layers, err := blobs(s.manifest)
	if err != nil {
		return false
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return false
	}
	defer cli.Close()
	insp, err := cli.ImageInspect(ctx, reference.FamiliarString(tag))
	if err != nil || (insp.ID != config.Digest.String() && insp.ID != s.digest.String()) {
		return false
	}
	if !opts.TTY {
		for _, l := range layers {
			fmt.Fprintf(opts.Progress, "layer %s: skipped: already exists\n", l.Digest)
		}
	}
	fmt.Fprintf(opts.Progress, "image %s: already loaded as %s, nothing sent\n", config.Digest, reference.FamiliarString(tag))
	return true
}

// reportPresent prints what a copy that the manifest check ended would
// have printed for each blob, and the manifest's line.
func (c *copier) reportPresent(s *served, what string) {
	reportPresent(c.opts, s, what)
}

func reportPresent(opts Options, s *served, what string) {
	if !opts.TTY {
		for _, m := range s.images() {
			config, layers, err := blobs(m)
			if err != nil {
				continue
			}
			for _, l := range layers {
				fmt.Fprintf(opts.Progress, "blob %s: skipped: already exists\n", l.Digest)
			}
			fmt.Fprintf(opts.Progress, "config %s: skipped: already exists\n", config.Digest)
		}
	}
	fmt.Fprintf(opts.Progress, "manifest %s: %s\n", s.digest, what)
}

// CopiesWholeIndex tells whether Copy sends a whole nix: index to a
// destination of transport destTransport (registries, oci:, oci-archive:,
// dir:); the others store one image and get the index's image for this
// machine's platform. `nixoci inspect --dest` shows what is sent.
func CopiesWholeIndex(destTransport string) bool {
	return takesLists(destTransport)
}

// takesLists tells whether a destination transport stores a whole index
// (and so is sent every image of a nix: index); the others get the image
// for this machine's platform.
func takesLists(transport string) bool {
	switch transport {
	case docker.Transport.Name(), layout.Transport.Name(), "oci-archive", "dir":
		return true
	}
	return false
}

// openedRef is a reference whose image source is already open, so that
// copy.Image and dockerload read the source the manifest check read
// instead of loading the descriptor again. The sources it hands out ignore
// Close; the caller of openServed closes the source.
type openedRef struct {
	types.ImageReference
	src types.ImageSource
}

// NewImageSource returns the open source.
func (r openedRef) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return keepOpen{r.src}, nil
}

// NewImage returns the image of the open source.
func (r openedRef) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	return image.FromSource(ctx, sys, keepOpen{r.src})
}

// keepOpen is an image source whose Close does nothing.
type keepOpen struct{ types.ImageSource }

func (keepOpen) Close() error { return nil }
