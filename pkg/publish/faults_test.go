package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.podman.io/image/v5/docker"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// randomImage writes a one-layer gzip image holding size random bytes,
// which no compression shrinks, and returns its directory.
func randomImage(t *testing.T, size int) string {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	writeImage(t, dir, descriptor.Gzip, nil, rooted(tree(t, map[string]string{"random": string(data)})))
	return dir
}

// pushResult is what faultyPush returns.
type pushResult struct {
	proxy *testenv.FaultProxy
	host  string
	took  time.Duration
	err   error
}

// faultyPush copies a two-layer nix: image to a fresh in-process registry
// behind a fault proxy with rules, and says how it went.
func faultyPush(t *testing.T, opts Options, rules ...testenv.Rule) pushResult {
	t.Helper()
	dir, _ := twoLayerImage(t)
	return faultyPushOf(t, dir, opts, rules...)
}

// faultyPushOf is faultyPush of the nix: image in dir.
func faultyPushOf(t *testing.T, dir string, opts Options, rules ...testenv.Rule) pushResult {
	t.Helper()
	proxy, host := testenv.StartFaultRegistry(t)
	for _, r := range rules {
		proxy.Add(r)
	}
	dest := "docker://" + host + "/nixoci/faults:v1"
	opts.DestTLSVerify = boolPtr(false)
	opts.BlobInfoCacheDir = t.TempDir()
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 10 * time.Millisecond
	}
	start := time.Now()
	err := Copy(testContext(t), "nix:"+dir, dest, opts)
	return pushResult{proxy: proxy, host: host, took: time.Since(start), err: err}
}

// manifestStatus is what the registry at host answers to GET of a manifest.
func manifestStatus(t *testing.T, host, repo, tag string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRetriesAreBounded(t *testing.T) {
	uploadStarts := regexp.MustCompile(`^/v2/.+/blobs/uploads/$`)
	for _, times := range []int{0, 2} {
		t.Run(fmt.Sprintf("retry-times %d", times), func(t *testing.T) {
			var log recordLog
			r := faultyPush(t, Options{RetryTimes: intPtr(times), Log: &log},
				testenv.Rule{Fault: testenv.Status500, Method: http.MethodPost, Path: uploadStarts})
			proxy, host, err, took := r.proxy, r.host, r.err, r.took
			if err == nil {
				t.Fatal("Copy() to a registry that always answers 500 = nil, want an error")
			}
			attempts := times + 1
			if times > 0 && !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", attempts)) {
				t.Errorf("Copy() = %v; want it to say it gave up after %d attempts", err, attempts)
			}
			if got := strings.Count(log.String(), "retrying in"); got != times {
				t.Errorf("logged %d retries, want %d:\n%s", got, times, log.String())
			}
			// Each attempt starts at most one upload per blob (two layers
			// and the config) before the first 500 ends it.
			if n := proxy.Count(http.MethodPost, uploadStarts); n < attempts || n > 3*attempts {
				t.Errorf("%d upload starts, want between %d and %d for %d attempts", n, attempts, 3*attempts, attempts)
			}
			if proxy.ManifestPuts() != 0 || manifestStatus(t, host, "nixoci/faults", "v1") != http.StatusNotFound {
				t.Errorf("a manifest was pushed (%d PUTs) after failed blobs", proxy.ManifestPuts())
			}
			if took > 30*time.Second {
				t.Errorf("the copy took %v, want it to give up quickly", took)
			}
		})
	}
}

func TestRetrySucceedsWhenFaultsStop(t *testing.T) {
	// Every fault ends an attempt: the copy needs a retry for each, at
	// most, and retry-times 3 allows them.
	for _, tc := range []struct {
		name string
		rule testenv.Rule
	}{
		{"500 on the first 3 requests", testenv.Rule{Fault: testenv.Status500, Times: 3}},
		{"500 on 2 manifest pushes", testenv.Rule{Fault: testenv.Status500, Method: http.MethodPut, Path: testenv.Manifests, Times: 2}},
		{"connection cut mid-blob", testenv.Rule{Fault: testenv.CutBody, Path: testenv.BlobUploads, BodyOnly: true, Times: 1}},
		{"connection cut mid-blob twice", testenv.Rule{Fault: testenv.CutBody, Path: testenv.BlobUploads, BodyOnly: true, Times: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var log recordLog
			r := faultyPush(t, Options{RetryTimes: intPtr(3), Progress: &out, Log: &log, ImageParallelCopies: 1}, tc.rule)
			proxy, host, err := r.proxy, r.host, r.err
			if err != nil {
				t.Fatalf("Copy() = %v, want success once the faults stop\nlog:\n%s", err, log.String())
			}
			// Two uploads in flight may be cut in the same attempt.
			if got := strings.Count(log.String(), "retrying in"); got < 1 || got > tc.rule.Times {
				t.Errorf("logged %d retries, want 1 to %d:\n%s", got, tc.rule.Times, log.String())
			}
			if proxy.Injected() != max(tc.rule.Times, 1) {
				t.Errorf("%d faults injected, want %d", proxy.Injected(), tc.rule.Times)
			}
			if got := manifestStatus(t, host, "nixoci/faults", "v1"); got != http.StatusOK {
				t.Errorf("GET manifest after the copy = %d, want 200", got)
			}
			if strings.Contains(out.String(), "interrupted") {
				t.Errorf("report of a successful copy says interrupted:\n%s", out.String())
			}
		})
	}
}

func TestNoManifestAfterFailedBlob(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule testenv.Rule
	}{
		{"every upload cut", testenv.Rule{Fault: testenv.CutBody, Path: testenv.BlobUploads, BodyOnly: true}},
		{"every upload refused", testenv.Rule{Fault: testenv.Status500, Path: testenv.BlobUploads, BodyOnly: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := faultyPush(t, Options{RetryTimes: intPtr(1)}, tc.rule)
			proxy, host, err := r.proxy, r.host, r.err
			if err == nil {
				t.Fatal("Copy() with every blob upload failing = nil, want an error")
			}
			if proxy.ManifestPuts() != 0 {
				t.Errorf("%d manifest PUTs after failed blobs, want 0", proxy.ManifestPuts())
			}
			if got := manifestStatus(t, host, "nixoci/faults", "v1"); got != http.StatusNotFound {
				t.Errorf("GET manifest after a failed push = %d, want 404", got)
			}
		})
	}
}

func TestStallTimeout(t *testing.T) {
	t.Run("trickled upload", func(t *testing.T) {
		r := faultyPushOf(t, randomImage(t, 64<<10), Options{RetryTimes: intPtr(1), StallTimeout: durationPtr(time.Second)},
			testenv.Rule{Fault: testenv.Trickle, Path: testenv.BlobUploads, BodyOnly: true})
		proxy, host, err, took := r.proxy, r.host, r.err, r.took
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("Copy() to a trickling registry = %v, want ErrStalled", err)
		}
		if !strings.Contains(err.Error(), "gave up after 2 attempts") {
			t.Errorf("Copy() = %v; want 2 attempts", err)
		}
		// Two attempts of a 1s timeout, noticed within a tenth, and a 10ms delay.
		if took > 10*time.Second {
			t.Errorf("the stalled copy took %v, want about 2s", took)
		}
		if proxy.ManifestPuts() != 0 || manifestStatus(t, host, "nixoci/faults", "v1") != http.StatusNotFound {
			t.Errorf("a manifest was pushed after a stalled blob")
		}
	})
	t.Run("trickled download", func(t *testing.T) {
		r := faultyPushOf(t, randomImage(t, 64<<10), Options{})
		proxy, host, err := r.proxy, r.host, r.err
		if err != nil {
			t.Fatalf("Copy() = %v", err)
		}
		proxy.Add(testenv.Rule{Fault: testenv.Trickle, Method: http.MethodGet, Path: testenv.Blobs})
		parent := t.TempDir()
		start := time.Now()
		err = Copy(testContext(t), "docker://"+host+"/nixoci/faults:v1", "oci:"+filepath.Join(parent, "pulled")+":v1", Options{
			SrcTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), RetryTimes: intPtr(0), StallTimeout: durationPtr(time.Second),
		})
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("Copy() from a trickling registry = %v, want ErrStalled", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("the stalled pull took %v, want about 1s", took)
		}
		if left := siblings(t, parent); len(left) != 0 {
			t.Errorf("the stalled pull left %v", left)
		}
	})
	t.Run("off", func(t *testing.T) {
		// Without the watchdog the trickle just goes on; the context ends it.
		proxy, host := testenv.StartFaultRegistry(t)
		proxy.Add(testenv.Rule{Fault: testenv.Trickle, Path: testenv.BlobUploads, BodyOnly: true})
		dir := randomImage(t, 64<<10)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err := Copy(ctx, "nix:"+dir, "docker://"+host+"/nixoci/faults:v1", Options{
			DestTLSVerify: boolPtr(false), BlobInfoCacheDir: t.TempDir(), RetryTimes: intPtr(0), StallTimeout: durationPtr(0),
		})
		if err == nil || errors.Is(err, ErrStalled) {
			t.Fatalf("Copy() without a stall timeout = %v, want the context's end", err)
		}
	})
}

func TestRetryable(t *testing.T) {
	urlErr := func(err error) error { return &url.Error{Op: "Patch", URL: "http://r/v2/x/blobs/uploads/1", Err: err} }
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"500", fmt.Errorf("writing blob: %w", docker.UnexpectedHTTPStatusError{StatusCode: 500}), true},
		{"503", docker.UnexpectedHTTPStatusError{StatusCode: 503}, true},
		{"429", docker.ErrTooManyRequests, true},
		{"404", docker.UnexpectedHTTPStatusError{StatusCode: 404}, false},
		{"connection reset", urlErr(opErr(syscall.ECONNRESET)), true},
		{"broken pipe", urlErr(opErr(syscall.EPIPE)), true},
		{"closed before the answer", urlErr(io.EOF), true},
		{"body cut short", fmt.Errorf("reading blob: %w", io.ErrUnexpectedEOF), true},
		{"stalled", fmt.Errorf("%w (then: %w)", stallError{time.Second}, context.Canceled), true},
		{"refused", urlErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), false},
		{"cancelled", fmt.Errorf("copying: %w", context.Canceled), false},
		{"credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("401")}, false},
		{"tls", urlErr(x509.UnknownAuthorityError{}), false},
		{"tls record", urlErr(tls.RecordHeaderError{}), false},
		{"local file", &os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryable(tc.err); got != tc.want {
				t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestRetryWaits(t *testing.T) {
	fail := docker.UnexpectedHTTPStatusError{StatusCode: 502}
	var log recordLog
	n := 0
	start := time.Now()
	err := retry(context.Background(), 2, 50*time.Millisecond, &log, func(context.Context) error { n++; return fail })
	if n != 3 || !errors.Is(err, fail) {
		t.Errorf("retry() = %v after %d attempts, want the 502 after 3", err, n)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("retry() took %v, want at least two delays of 50ms", took)
	}
	// A cancelled context ends the wait at once.
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = retry(ctx, 5, time.Hour, &log, func(context.Context) error { n++; cancel(); return fail })
	if n != 1 || err == nil {
		t.Errorf("retry() with the context cancelled = %v after %d attempts, want an error after 1", err, n)
	}
}

// recordLog is a Logger that keeps what it is told.
type recordLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *recordLog) Debugf(format string, args ...any) { l.printf("debug: "+format, args...) }
func (l *recordLog) Warnf(format string, args ...any)  { l.printf("warning: "+format, args...) }

func (l *recordLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, format+"\n", args...)
}

func (l *recordLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
