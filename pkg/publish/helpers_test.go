package publish

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
)

// tree writes files (name → content, mode) under a new directory standing in
// for a store path and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "abc-tree")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// rooted puts a store path's content at the image root.
func rooted(p string) descriptor.Path {
	return descriptor.Path{Path: p, Rewrite: &descriptor.Rewrite{Regex: "^" + regexp.QuoteMeta(p), Repl: ""}}
}

// writeImage describes one layer per path and writes dir/image.json.
func writeImage(t *testing.T, dir, compression string, cmd []string, paths ...descriptor.Path) *descriptor.Image {
	t.Helper()
	img := &descriptor.Image{Architecture: "amd64", OS: "linux"}
	img.Config.Cmd = cmd
	for _, p := range paths {
		l, err := layer.Describe(context.Background(), layer.Spec{Paths: []descriptor.Path{p}, Compression: compression})
		if err != nil {
			t.Fatalf("layer.Describe(%s) = %v", p.Path, err)
		}
		img.Layers = append(img.Layers, l.(layer.Describer).Descriptor())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := descriptor.Write(filepath.Join(dir, descriptor.ImageFileName), img); err != nil {
		t.Fatal(err)
	}
	return img
}

// registry is an in-process distribution registry on 127.0.0.1 that counts
// blob uploads and can refuse credentials or break an upload.
type registry struct {
	host string

	// user and pass, when set, are the only credentials accepted.
	user, pass string
	// breakUpload, when set, is asked for each blob upload request with a
	// body (1-based); true cuts the connection after part of the body.
	breakUpload func(n int) bool

	// blobHeadDelay, when set, holds every HEAD of a blob that long, so
	// that concurrent checks overlap.
	blobHeadDelay time.Duration
	// manifestHeadDelay, when set, holds every HEAD of a manifest that
	// long: a registry that hangs.
	manifestHeadDelay time.Duration

	mu             sync.Mutex
	uploadRequests int   // requests under /v2/*/blobs/uploads/
	uploadBytes    int64 // body bytes of those requests
	bodyUploads    int
	manifestPuts   int
	// requests are all requests as "METHOD PATH?QUERY", in order.
	requests []string
	// blobHeads is how many blob HEADs are running; maxBlobHeads the
	// most that ran at once.
	blobHeads, maxBlobHeads int
}

var blobPath = regexp.MustCompile(`^/v2/.+/blobs/sha256:`)

var uploadPath = regexp.MustCompile(`^/v2/.+/blobs/uploads/`)
var manifestPath = regexp.MustCompile(`^/v2/.+/manifests/`)

func newRegistry(t *testing.T) *registry {
	t.Helper()
	cfg := &configuration.Configuration{Storage: configuration.Storage{"inmemory": configuration.Parameters{}}}
	cfg.Log.AccessLog.Disabled = true
	cfg.HTTP.Secret = "nixoci-test"
	app := handlers.NewApp(context.Background(), cfg)
	r := &registry{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		line := req.Method + " " + req.URL.Path
		if req.URL.RawQuery != "" {
			line += "?" + req.URL.RawQuery
		}
		r.requests = append(r.requests, line)
		r.mu.Unlock()
		if req.Method == http.MethodHead && blobPath.MatchString(req.URL.Path) {
			r.mu.Lock()
			r.blobHeads++
			r.maxBlobHeads = max(r.maxBlobHeads, r.blobHeads)
			r.mu.Unlock()
			time.Sleep(r.blobHeadDelay)
			defer func() {
				r.mu.Lock()
				r.blobHeads--
				r.mu.Unlock()
			}()
		}
		if req.Method == http.MethodHead && manifestPath.MatchString(req.URL.Path) && r.manifestHeadDelay > 0 {
			select {
			case <-time.After(r.manifestHeadDelay):
			case <-req.Context().Done():
				return
			}
		}
		if r.user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		if manifestPath.MatchString(req.URL.Path) && req.Method == http.MethodPut {
			r.mu.Lock()
			r.manifestPuts++
			r.mu.Unlock()
		}
		if uploadPath.MatchString(req.URL.Path) {
			r.mu.Lock()
			r.uploadRequests++
			n := 0
			if req.ContentLength != 0 && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
				r.bodyUploads++
				n = r.bodyUploads
			}
			r.mu.Unlock()
			if n > 0 && r.breakUpload != nil && r.breakUpload(n) {
				buf := make([]byte, 512)
				k, _ := io.ReadFull(req.Body, buf)
				r.count(int64(k))
				panic(http.ErrAbortHandler)
			}
			req.Body = &countingBody{ReadCloser: req.Body, r: r}
		}
		app.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *registry) count(n int64) {
	r.mu.Lock()
	r.uploadBytes += n
	r.mu.Unlock()
}

// uploads returns the counters and resets them.
func (r *registry) uploads() (requests int, bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	requests, bytes = r.uploadRequests, r.uploadBytes
	r.uploadRequests, r.uploadBytes = 0, 0
	return requests, bytes
}

// seen returns the requests since the last call and forgets them.
func (r *registry) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.requests
	r.requests = nil
	r.uploadRequests, r.uploadBytes = 0, 0
	return out
}

type countingBody struct {
	io.ReadCloser
	r *registry
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.r.count(int64(n))
	return n, err
}

// TestMain silences the in-process registry, which logs every request to
// logrus's standard logger, unless -v is given.
func TestMain(m *testing.M) {
	// containers-storage re-executes the test binary to apply layers.
	if reexec.Init() {
		return
	}
	flag.Parse()
	if !testing.Verbose() {
		logrus.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}

func boolPtr(b bool) *bool { return &b }

func intPtr(i int) *int { return &i }

func durationPtr(d time.Duration) *time.Duration { return &d }
