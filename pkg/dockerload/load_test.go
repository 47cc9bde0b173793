package dockerload

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"

	"github.com/nixoci/nixoci/tests/testenv"
)

func TestChainIDs(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	ab := digest.Digest("sha256:" + sha256Hex(a.String()+" "+b.String()))
	abc := digest.Digest("sha256:" + sha256Hex(ab.String()+" "+c.String()))
	for _, tc := range []struct {
		name string
		in   []digest.Digest
		want []digest.Digest
	}{
		{"empty", nil, []digest.Digest{}},
		{"one", []digest.Digest{a}, []digest.Digest{a}},
		{"three", []digest.Digest{a, b, c}, []digest.Digest{a, ab, abc}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chainIDs(tc.in); !cmp.Equal(got, tc.want) {
				t.Errorf("chainIDs() = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeDaemon records the archive a load sends and answers like dockerd.
type fakeDaemon struct {
	images     [][]digest.Digest // RootFS layers of the daemon's images
	containerd bool
	refuseOnce bool // answer only the first load with refuse
	loads      int
	refuse     string            // error text to answer the load with
	entries    map[string][]byte // what the last load sent
	manifest   []archiveManifest
}

func (f *fakeDaemon) Info(context.Context) (system.Info, error) {
	var info system.Info
	if f.containerd {
		info.DriverStatus = [][2]string{{"driver-type", "io.containerd.snapshotter.v1"}}
	}
	return info, nil
}

func (f *fakeDaemon) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	var out []image.Summary
	for i := range f.images {
		out = append(out, image.Summary{ID: string(rune('a' + i))})
	}
	return out, nil
}

func (f *fakeDaemon) ImageInspect(_ context.Context, id string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	var r image.InspectResponse
	for _, d := range f.images[id[0]-'a'] {
		r.RootFS.Layers = append(r.RootFS.Layers, d.String())
	}
	return r, nil
}

func (f *fakeDaemon) ImageLoad(_ context.Context, in io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	f.loads++
	f.entries = map[string][]byte{}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return image.LoadResponse{}, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return image.LoadResponse{}, err
		}
		f.entries[h.Name] = data
	}
	f.manifest = nil
	if err := json.Unmarshal(f.entries["manifest.json"], &f.manifest); err != nil {
		return image.LoadResponse{}, err
	}
	body := `{"stream":"Loaded image\n"}`
	if f.refuse != "" && (!f.refuseOnce || f.loads == 1) {
		body = `{"errorDetail":{"message":"` + f.refuse + `"},"error":"` + f.refuse + `"}`
	}
	return image.LoadResponse{Body: io.NopCloser(strings.NewReader(body)), JSON: true}, nil
}

func TestLoadSkipsWhatTheDaemonHas(t *testing.T) {
	base := tarOf(t, file{"etc/base", 0o644, []byte("base")})
	mid := tarOf(t, file{"etc/mid", 0o644, []byte("mid")})
	top := tarOf(t, file{"etc/top", 0o644, []byte("top")})
	ref := writeLayout(t, t.TempDir(), [][]byte{base, mid, top})
	dBase, dMid, dTop := digest.FromBytes(base), digest.FromBytes(mid), digest.FromBytes(top)
	tag := mustTag(t, "example.com/app:v1")

	for _, tc := range []struct {
		name     string
		daemon   fakeDaemon
		noSkip   bool
		wantSkip []bool
		wantErr  string
	}{
		{name: "empty daemon", wantSkip: []bool{false, false, false}},
		{name: "base present", daemon: fakeDaemon{images: [][]digest.Digest{{dBase}}}, wantSkip: []bool{true, false, false}},
		{name: "two of three", daemon: fakeDaemon{images: [][]digest.Digest{{dBase}, {dBase, dMid}}}, wantSkip: []bool{true, true, false}},
		{name: "all present", daemon: fakeDaemon{images: [][]digest.Digest{{dBase, dMid, dTop}}}, wantSkip: []bool{true, true, true}},
		// The same diff_id on another parent is another layer to docker.
		{name: "same layer other parent", daemon: fakeDaemon{images: [][]digest.Digest{{dMid}, {dTop}}}, wantSkip: []bool{false, false, false}},
		{name: "no skip asked", daemon: fakeDaemon{images: [][]digest.Digest{{dBase}}}, noSkip: true, wantSkip: []bool{false, false, false}},
		{name: "containerd store", daemon: fakeDaemon{images: [][]digest.Digest{{dBase}}, containerd: true}, wantSkip: []bool{false, false, false}},
		{name: "daemon refuses", daemon: fakeDaemon{refuse: "bad image"}, wantErr: "bad image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var progress bytes.Buffer
			var log recordLog
			res, err := load(ctx, &tc.daemon, ref, tag, Options{Progress: &progress, NoSkip: tc.noSkip, Log: &log})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("load() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("load() = %v", err)
			}
			// What Load would have logged goes to its logger: the fallback
			// to sending every layer as a warning, the daemon's messages
			// as details.
			if got, want := strings.Contains(log.String(), "warning: loading"), tc.daemon.containerd; got != want {
				t.Errorf("warning logged = %v, want %v:\n%s", got, want, log.String())
			}
			if !strings.Contains(log.String(), "debug: docker load: Loaded image") {
				t.Errorf("the daemon's answer was not logged as a detail:\n%s", log.String())
			}
			m := tc.daemon.manifest
			if len(m) != 1 || len(m[0].Layers) != 3 {
				t.Fatalf("manifest.json = %+v, want one image with 3 layers", m)
			}
			if got := m[0].RepoTags; !cmp.Equal(got, []string{"example.com/app:v1"}) {
				t.Errorf("RepoTags = %v, want [example.com/app:v1]", got)
			}
			cfg, ok := tc.daemon.entries[m[0].Config]
			if !ok || digest.FromBytes(cfg) != res.ImageID {
				t.Errorf("config %s missing or not matching image ID %s", m[0].Config, res.ImageID)
			}
			blobs := [][]byte{base, mid, top}
			for i, want := range tc.wantSkip {
				data, sent := tc.daemon.entries[m[0].Layers[i]]
				if sent == want {
					t.Errorf("layer %d sent = %v, want %v", i, sent, !want)
				}
				if sent && !bytes.Equal(data, blobs[i]) {
					t.Errorf("layer %d bytes differ from its blob", i)
				}
				if res.Layers[i].Skipped != want {
					t.Errorf("Result.Layers[%d].Skipped = %v, want %v", i, res.Layers[i].Skipped, want)
				}
				line := "layer " + res.Layers[i].DiffID.String() + ": skipped: already exists"
				if got := strings.Contains(progress.String(), line); got != want {
					t.Errorf("progress has %q = %v, want %v; progress:\n%s", line, got, want, progress.String())
				}
			}
		})
	}
}

func sha256Hex(s string) string {
	return digest.FromString(s).Encoded()
}

func mustTag(t *testing.T, s string) reference.NamedTagged {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	nt, ok := n.(reference.NamedTagged)
	if !ok {
		t.Fatalf("%s has no tag", s)
	}
	return nt
}

// recordLog is a Logger that keeps what it is told.
type recordLog struct{ buf bytes.Buffer }

func (l *recordLog) Debugf(format string, args ...any) {
	fmt.Fprintf(&l.buf, "debug: "+format+"\n", args...)
}

func (l *recordLog) Warnf(format string, args ...any) {
	fmt.Fprintf(&l.buf, "warning: "+format+"\n", args...)
}

func (l *recordLog) String() string { return l.buf.String() }

// dockerOrSkip returns a client for the local daemon, skipping the test when
// there is none outside CI (failing under CI=true).
func dockerOrSkip(t *testing.T) *client.Client {
	t.Helper()
	missing := func(why string) {
		testenv.Missing(t, "no docker daemon: %s", why)
	}
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			missing(err.Error())
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		missing(err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		missing(err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestLoadIntoDocker(t *testing.T) {
	cli := dockerOrSkip(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.Missing(t, "busybox-static: %v", err)
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(nonce)
	// The nonce makes the base layer new to the daemon.
	base := tarOf(t, file{"bin/busybox", 0o755, busybox}, file{"etc/nonce", 0o644, []byte(id)})
	top := tarOf(t, file{"hello.txt", 0o644, []byte("hello from " + id + "\n")})
	refA := writeLayout(t, t.TempDir(), [][]byte{base}, "/bin/busybox", "cat", "/etc/nonce")
	refB := writeLayout(t, t.TempDir(), [][]byte{base, top}, "/bin/busybox", "cat", "/hello.txt")
	tagA, tagB := mustTag(t, "nixoci-test/dockerload-a:"+id), mustTag(t, "nixoci-test/dockerload-b:"+id)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, tg := range []reference.NamedTagged{tagB, tagA} {
			if _, err := cli.ImageRemove(ctx, reference.FamiliarString(tg), image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
				t.Logf("removing %s: %v", tg, err)
			}
		}
	})

	var progress bytes.Buffer
	resA, err := Load(ctx, refA, tagA, Options{Progress: &progress})
	if err != nil {
		t.Fatalf("Load(a) = %v", err)
	}
	if resA.Layers[0].Skipped || resA.Layers[0].Bytes != int64(len(base)) {
		t.Errorf("Load(a) base layer = %+v, want loaded with %d bytes", resA.Layers[0], len(base))
	}
	resB, err := Load(ctx, refB, tagB, Options{Progress: &progress})
	if err != nil {
		t.Fatalf("Load(b) = %v\nprogress:\n%s", err, progress.String())
	}
	if !resB.Layers[0].Skipped || resB.Layers[0].Bytes != 0 {
		t.Errorf("Load(b) base layer = %+v, want skipped", resB.Layers[0])
	}
	if resB.Layers[1].Skipped || resB.Layers[1].Bytes != int64(len(top)) {
		t.Errorf("Load(b) top layer = %+v, want loaded with %d bytes", resB.Layers[1], len(top))
	}
	t.Logf("progress:\n%s", progress.String())

	insp, err := cli.ImageInspect(ctx, reference.FamiliarString(tagB))
	if err != nil {
		t.Fatalf("ImageInspect(%s) = %v", tagB, err)
	}
	wantLayers := []string{digest.FromBytes(base).String(), digest.FromBytes(top).String()}
	if !cmp.Equal(insp.RootFS.Layers, wantLayers) {
		t.Errorf("RootFS.Layers = %v, want %v", insp.RootFS.Layers, wantLayers)
	}
	if insp.ID != resB.ImageID.String() {
		t.Errorf("image ID = %s, want %s", insp.ID, resB.ImageID)
	}

	testenv.RequireTools(t, "docker")
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", reference.FamiliarString(tagB)).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", tagB, err, out)
	}
	if want := "hello from " + id + "\n"; string(out) != want {
		t.Errorf("docker run %s printed %q, want %q", tagB, out, want)
	}

	// Loading b again sends no layer at all.
	resB2, err := Load(ctx, refB, tagB, Options{})
	if err != nil {
		t.Fatalf("Load(b) again = %v", err)
	}
	for i, l := range resB2.Layers {
		if !l.Skipped {
			t.Errorf("second Load(b) layer %d = %+v, want skipped", i, l)
		}
	}
	var noTag reference.NamedTagged
	if _, err := Load(ctx, refB, noTag, Options{}); !errors.Is(err, ErrNoTag) {
		t.Errorf("Load(no tag) = %v, want ErrNoTag", err)
	}
}

func TestLoadFaults(t *testing.T) {
	base := tarOf(t, file{"etc/base", 0o644, []byte("base")})
	top := tarOf(t, file{"etc/top", 0o644, []byte("top")})
	dBase := digest.FromBytes(base)
	tag := mustTag(t, "example.com/app:v1")
	missing := "open /var/lib/docker/tmp/docker-import-1/" + dBase.Encoded() + "/layer.tar: no such file or directory"

	t.Run("layer removed during load is sent again", func(t *testing.T) {
		ref := writeLayout(t, t.TempDir(), [][]byte{base, top})
		d := &fakeDaemon{images: [][]digest.Digest{{dBase}}, refuse: missing, refuseOnce: true}
		res, err := load(context.Background(), d, ref, tag, Options{})
		if err != nil {
			t.Fatalf("load() = %v", err)
		}
		if d.loads != 2 {
			t.Errorf("loads = %d, want 2", d.loads)
		}
		if _, ok := d.entries[dBase.Encoded()+"/layer.tar"]; !ok {
			t.Errorf("second load lacks the base layer file")
		}
		if res.Layers[0].Skipped {
			t.Errorf("Result.Layers[0].Skipped = true, want false after the retry")
		}
	})
	t.Run("corrupt blob", func(t *testing.T) {
		dir := t.TempDir()
		ref := writeLayout(t, dir, [][]byte{base, top})
		blob := dir + "/blobs/sha256/" + digest.FromBytes(top).Encoded()
		bad := bytes.Clone(top)
		bad[len(bad)-1] ^= 1
		if err := os.WriteFile(blob, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		d := &fakeDaemon{}
		_, err := load(context.Background(), d, ref, tag, Options{})
		if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
			t.Fatalf("load() = %v, want a digest mismatch", err)
		}
	})
	t.Run("missing source", func(t *testing.T) {
		dir := t.TempDir()
		ref := writeLayout(t, dir, [][]byte{base})
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		_, err := load(context.Background(), &fakeDaemon{}, ref, tag, Options{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("load() = %v, want ErrNotExist", err)
		}
	})
}

func TestLoadChecksPolicy(t *testing.T) {
	ref := writeLayout(t, t.TempDir(), [][]byte{tarOf(t, file{"etc/a", 0o644, []byte("a")})})
	for _, tc := range []struct {
		name   string
		req    signature.PolicyRequirement
		reject bool
	}{
		{"accept", signature.NewPRInsecureAcceptAnything(), false},
		{"reject", signature.NewPRReject(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{tc.req}})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Destroy()
			d := &fakeDaemon{}
			_, err = load(context.Background(), d, ref, mustTag(t, "example.com/app:v1"), Options{Policy: pc})
			if got := errors.Is(err, ErrRejected); got != tc.reject {
				t.Errorf("load() = %v, want rejected=%v", err, tc.reject)
			}
			if sent := d.loads > 0; sent == tc.reject {
				t.Errorf("daemon loads = %d, want sent=%v", d.loads, !tc.reject)
			}
		})
	}
}
