package testenv

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Fault is a failure a FaultProxy injects into a request.
type Fault int

const (
	// Status500 answers 500 Internal Server Error without passing the
	// request on.
	Status500 Fault = iota
	// CutBody passes the request on but closes the connection in the
	// middle of a body: after 512 bytes of the request's body when it has
	// one (a blob upload), else after half of the answer's body (a blob
	// download).
	CutBody
	// Trickle moves the request's body to the registry, and the answer's
	// body back, at TrickleRate.
	Trickle
)

func (f Fault) String() string {
	switch f {
	case Status500:
		return "500"
	case CutBody:
		return "cut"
	case Trickle:
		return "trickle"
	}
	return "none"
}

// TrickleRate is how fast Trickle moves bodies: 32 bytes every 100ms.
const (
	trickleChunk = 32
	trickleTick  = 100 * time.Millisecond
	// TrickleRate is in bytes a second.
	TrickleRate = trickleChunk * int(time.Second/trickleTick)
)

// Request paths of the registry API, to select requests in a Rule.
var (
	// BlobUploads are the upload requests (POST, PATCH, PUT) of blobs.
	BlobUploads = regexp.MustCompile(`^/v2/.+/blobs/uploads/`)
	// Blobs are the requests (HEAD, GET) of blobs by digest.
	Blobs = regexp.MustCompile(`^/v2/.+/blobs/sha256:`)
	// Manifests are the requests of manifests by tag or digest.
	Manifests = regexp.MustCompile(`^/v2/.+/manifests/`)
)

// Rule selects requests and the fault they get.
type Rule struct {
	Fault Fault
	// Method selects requests by method; "" is any.
	Method string
	// Path selects requests by URL path; nil is any.
	Path *regexp.Regexp
	// BodyOnly selects only requests with a body (uploads that carry
	// data).
	BodyOnly bool
	// Times is how many selected requests get the fault; 0 is every one.
	Times int
}

func (r *Rule) selects(req *http.Request) bool {
	return (r.Method == "" || r.Method == req.Method) &&
		(r.Path == nil || r.Path.MatchString(req.URL.Path)) &&
		(!r.BodyOnly || req.ContentLength != 0)
}

// Request is one request a FaultProxy saw, and the fault it injected.
type Request struct {
	Method, Path string
	// Fault is the fault injected; -1 for none.
	Fault Fault
}

// FaultProxy is an http.Handler in front of a registry (Next) that injects
// the faults of its rules. Rules are tried in order; the first that
// selects a request and has times left applies. Every fault is bounded: a
// trickle ends when the client goes away or Close is called.
type FaultProxy struct {
	Next http.Handler

	mu       sync.Mutex
	rules    []*ruleState
	requests []Request
	stop     chan struct{}
	once     sync.Once
}

type ruleState struct {
	Rule
	left int // -1: unlimited
}

// NewFaultProxy returns a proxy in front of next with no rules.
func NewFaultProxy(next http.Handler) *FaultProxy {
	return &FaultProxy{Next: next, stop: make(chan struct{})}
}

// Add appends a rule.
func (p *FaultProxy) Add(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	left := r.Times
	if left == 0 {
		left = -1
	}
	p.rules = append(p.rules, &ruleState{Rule: r, left: left})
}

// Clear removes every rule: the faults stop.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Requests returns the requests seen so far, in order.
func (p *FaultProxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Count returns how many requests seen so far match method ("" any) and
// path (nil any).
func (p *FaultProxy) Count(method string, path *regexp.Regexp) int {
	n := 0
	for _, r := range p.Requests() {
		if (method == "" || r.Method == method) && (path == nil || path.MatchString(r.Path)) {
			n++
		}
	}
	return n
}

// Injected returns how many faults were injected so far.
func (p *FaultProxy) Injected() int {
	n := 0
	for _, r := range p.Requests() {
		if r.Fault >= 0 {
			n++
		}
	}
	return n
}

// Close ends every trickle in progress and every later one at once.
func (p *FaultProxy) Close() { p.once.Do(func() { close(p.stop) }) }

// pick returns the fault for req (-1 for none) and records the request.
func (p *FaultProxy) pick(req *http.Request) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	fault := Fault(-1)
	for _, r := range p.rules {
		if r.left != 0 && r.selects(req) {
			if r.left > 0 {
				r.left--
			}
			fault = r.Fault
			break
		}
	}
	p.requests = append(p.requests, Request{Method: req.Method, Path: req.URL.Path, Fault: fault})
	return fault
}

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// A server request without a body has ContentLength 0; -1 is a
	// chunked body.
	hasBody := req.ContentLength != 0
	switch p.pick(req) {
	case Status500:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "fault injected by testenv.FaultProxy\n")
	case CutBody:
		if hasBody {
			_, _ = io.CopyN(io.Discard, req.Body, 512)
			panic(http.ErrAbortHandler)
		}
		rec := httptest.NewRecorder()
		p.Next.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		copyHeader(w, rec)
		_, _ = w.Write(body[:len(body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	case Trickle:
		if hasBody {
			req.Body = &trickleReader{r: req.Body, ctx: req.Context(), stop: p.stop}
		}
		rec := httptest.NewRecorder()
		p.Next.ServeHTTP(rec, req)
		copyHeader(w, rec)
		trickleWrite(req.Context(), p.stop, w, rec.Body.Bytes())
	default:
		p.Next.ServeHTTP(w, req)
	}
}

// copyHeader sends rec's status and headers.
func copyHeader(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
}

// trickleWrite writes body in small chunks, a tick apart, until done or
// the client or the proxy ends it.
func trickleWrite(ctx context.Context, stop <-chan struct{}, w http.ResponseWriter, body []byte) {
	f, _ := w.(http.Flusher)
	for len(body) > 0 {
		n := min(trickleChunk, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		if f != nil {
			f.Flush()
		}
		body = body[n:]
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-time.After(trickleTick):
		}
	}
}

// trickleReader reads a request body in small chunks, a tick apart.
type trickleReader struct {
	r    io.ReadCloser
	ctx  context.Context
	stop <-chan struct{}
}

func (t *trickleReader) Read(b []byte) (int, error) {
	select {
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	case <-t.stop:
		return 0, io.ErrUnexpectedEOF
	case <-time.After(trickleTick):
	}
	if len(b) > trickleChunk {
		b = b[:trickleChunk]
	}
	return t.r.Read(b)
}

func (t *trickleReader) Close() error { return t.r.Close() }

// StartFaultRegistry starts an in-process distribution registry (in-memory
// storage) behind a FaultProxy, serving plain HTTP on 127.0.0.1, and
// returns the proxy and the registry's HOST:PORT. Both stop when the test
// ends.
func StartFaultRegistry(t testing.TB) (*FaultProxy, string) {
	t.Helper()
	cfg := &configuration.Configuration{Storage: configuration.Storage{"inmemory": configuration.Parameters{}}}
	cfg.Log.AccessLog.Disabled = true
	cfg.HTTP.Secret = "nixoci-test"
	app := handlers.NewApp(context.Background(), cfg)
	p := NewFaultProxy(app)
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		p.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return p, strings.TrimPrefix(srv.URL, "http://")
}

// StartFaultProxy starts a FaultProxy in front of the registry at upstream
// (HOST:PORT, plain HTTP), serving on 127.0.0.1, and returns it and its
// HOST:PORT. The registry sees the proxy's address as the host, so the
// upload locations it hands out lead back through the proxy. It stops
// when the test ends. Use it where an in-process registry's logging
// (logrus's standard logger) would flood the test's output.
func StartFaultProxy(t testing.TB, upstream string) (*FaultProxy, string) {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: upstream}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
		// The cut and trickled bodies make it complain on every fault.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p := NewFaultProxy(rp)
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		p.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return p, strings.TrimPrefix(srv.URL, "http://")
}

// ManifestPuts returns how many manifests were pushed through p.
func (p *FaultProxy) ManifestPuts() int { return p.Count(http.MethodPut, Manifests) }
