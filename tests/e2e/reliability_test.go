package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/nixoci/nixoci/tests/testenv"
)

// TestFaultyRegistry pushes through the fault proxy with the nixoci
// binary: a registry that fails for a while is retried until it works,
// retries are bounded, a trickling registry fails within the stall
// timeout, and no manifest is pushed after a failed blob.
func TestFaultyRegistry(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	img := buildImage(t, ctx, newStore(t))

	t.Run("500s that stop", func(t *testing.T) {
		proxy, host := faultRegistry(t, ctx)
		// The registry's first four answers to GET /v2/ are 500: two
		// to the manifest check (which steps aside for the copy), two to
		// the copy's first two attempts. Then an upload is cut.
		proxy.Add(testenv.Rule{Fault: testenv.Status500, Method: http.MethodGet, Path: regexp.MustCompile(`^/v2/$`), Times: 4})
		proxy.Add(testenv.Rule{Fault: testenv.CutBody, Path: testenv.BlobUploads, BodyOnly: true, Times: 1})
		r := copyImage(t, ctx, img, "docker://"+host+"/faults/stop:v1", "--dest-tls-verify=false", "--retry-delay=100ms")
		if n := strings.Count(r.Stderr, "retrying in 100ms"); n != 3 {
			t.Errorf("stderr shows %d retries, want 3 (two 500s, one cut upload):\n%s", n, r.Stderr)
		}
		if proxy.ManifestPuts() != 1 {
			t.Errorf("manifest PUTs = %d, want 1", proxy.ManifestPuts())
		}
	})

	t.Run("retries are bounded", func(t *testing.T) {
		proxy, host := faultRegistry(t, ctx)
		proxy.Add(testenv.Rule{Fault: testenv.Status500, Path: testenv.BlobUploads, BodyOnly: true})
		start := time.Now()
		r := failing(t, ctx, []string{host, "500", "gave up after 3 attempts"},
			"copy", "--dest-tls-verify=false", "--retry-times=2", "--retry-delay=100ms", "nix:"+img.Path, "docker://"+host+"/faults/bounded:v1")
		if took := time.Since(start); took > time.Minute {
			t.Errorf("the copy took %v to give up", took)
		}
		if n := strings.Count(r.Stderr, "retrying in"); n != 2 {
			t.Errorf("stderr shows %d retries, want 2:\n%s", n, r.Stderr)
		}
		if proxy.ManifestPuts() != 0 {
			t.Errorf("manifest PUTs = %d after failed blobs, want 0", proxy.ManifestPuts())
		}
	})

	t.Run("stall timeout", func(t *testing.T) {
		proxy, host := faultRegistry(t, ctx)
		proxy.Add(testenv.Rule{Fault: testenv.Trickle, Path: testenv.BlobUploads, BodyOnly: true})
		start := time.Now()
		failing(t, ctx, []string{host, "stalled", "gave up after 2 attempts"},
			"copy", "--dest-tls-verify=false", "--stall-timeout=2s", "--retry-times=1", "--retry-delay=100ms", "nix:"+img.Path, "docker://"+host+"/faults/stall:v1")
		// Two attempts of 2s, each noticed within 0.2s, and the build of
		// the stream: far below a minute.
		if took := time.Since(start); took > time.Minute {
			t.Errorf("the stalled copy took %v", took)
		}
		if proxy.ManifestPuts() != 0 {
			t.Errorf("manifest PUTs = %d after stalled blobs, want 0", proxy.ManifestPuts())
		}
	})
}

// TestPasswordNeverPrinted copies with --debug to a registry that needs a
// password, with a wrong and the right one, given on the command line and
// typed at the prompt: the password appears in no output.
func TestPasswordNeverPrinted(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	testenv.RequireTools(t, "docker-registry", "script")
	const secret = "s3cret-Pa55word-nixoci"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	testenv.WriteFile(t, htpasswd, "nixoci:"+string(hash)+"\n", 0o644)
	reg := testenv.StartRegistry(t, ctx, testenv.RegistryOptions{Htpasswd: htpasswd, AccessLog: true}).Addr
	img := buildImage(t, ctx, newStore(t))
	ref := "docker://" + reg + "/nixoci/secret:v1"
	leaks := []string{secret, base64.StdEncoding.EncodeToString([]byte("nixoci:" + secret)), "Authorization: Basic"}
	check := func(what, out string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(out, l) {
				t.Errorf("%s printed %q:\n%s", what, l, out)
			}
		}
	}

	r := testenv.Run(ctx, nixoci(t), "--debug", "copy", "--dest-tls-verify=false", "--dest-creds", "nixoci:wrong-"+secret, "nix:"+img.Path, ref)
	if r.Err == nil || !strings.Contains(r.Stderr, "--dest-creds") {
		t.Errorf("a copy with a wrong password: want a failure pointing at --dest-creds:\n%s", r)
	}
	check("a copy with a wrong password", r.Stdout+r.Stderr)
	r = testenv.Must(t, ctx, nixoci(t), "--debug", "copy", "--dest-tls-verify=false", "--dest-creds", "nixoci:"+secret, "nix:"+img.Path, ref)
	check("a copy with the right password", r.Stdout+r.Stderr)
	if !strings.Contains(r.Stderr, "level=debug") {
		t.Errorf("--debug printed no debug lines:\n%s", r.Stderr)
	}

	// A user name alone: without a terminal it is refused clearly ...
	failing(t, ctx, []string{"--dest-creds nixoci has no password", "not a terminal"}, "copy", "--dest-tls-verify=false", "--dest-creds", "nixoci", "nix:"+img.Path, ref)
	// ... and on a terminal the password is asked for, and not echoed.
	command := strings.Join([]string{nixoci(t), "--debug", "copy", "--dest-tls-verify=false", "--dest-creds", "nixoci", "nix:" + img.Path, ref + "-typed"}, " ")
	out := typeAtPrompt(t, ctx, command, "Password for nixoci (destination registry):", secret)
	check("a copy with the password typed", out)
}

// typeAtPrompt runs command on a terminal (script(1) gives it a pty),
// types answer once prompt appears, as a user would (typed earlier, the
// terminal would echo it before the program turns echo off), and returns
// what the terminal showed.
func typeAtPrompt(t *testing.T, ctx context.Context, command, prompt, answer string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "script", "-qefc", command, "/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	cmd.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	shown := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(shown(), prompt) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Let the program turn echo off after printing the prompt.
	time.Sleep(200 * time.Millisecond)
	io.WriteString(stdin, answer+"\n")
	err = cmd.Wait()
	stdin.Close()
	if !strings.Contains(shown(), prompt) {
		t.Fatalf("%s showed no prompt %q:\n%s", command, prompt, shown())
	}
	if err != nil {
		t.Fatalf("%s with the answer typed at the prompt: %v\n%s", command, err, shown())
	}
	return shown()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestProgressLines checks `nixoci copy`'s per-blob lines when
// containers/image changes the blobs on the way: recompressed with
// --dest-compress-format zstd, compressed with --dest-compress-format
// gzip from a --compression none descriptor (without the flag such a
// descriptor is pushed as it is). Every layer is "done" and says so, naming the blob the
// registry got; nothing says "interrupted".
func TestProgressLines(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	line := regexp.MustCompile(`(?m)^blob (sha256:[0-9a-f]{64}): done: (.+) as (sha256:[0-9a-f]{64}) \((\d+) bytes\)$`)
	for _, tc := range []struct {
		name       string
		layers     []string // nixoci layers flags
		copy       []string // nixoci copy flags
		conversion string
	}{
		{"zstd for the destination", nil, []string{"--dest-compress-format", "zstd"}, "recompressed from gzip to zstd"},
		{"uncompressed descriptor", []string{"--compression", "none"}, []string{"--dest-compress-format", "gzip"}, "compressed with gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, host := faultRegistry(t, ctx)
			img := buildImage(t, ctx, s, tc.layers...)
			r := copyImage(t, ctx, img, "docker://"+host+"/nixoci/progress:v1", append([]string{"--dest-tls-verify=false"}, tc.copy...)...)
			if strings.Contains(r.Stdout, "interrupted") {
				t.Errorf("a successful copy printed interrupted:\n%s", r.Stdout)
			}
			lines := map[string][]string{}
			for _, g := range line.FindAllStringSubmatch(r.Stdout, -1) {
				lines[g[1]] = g
			}
			for i, l := range img.Image.Layers {
				g, ok := lines[l.Digest.String()]
				if !ok {
					t.Errorf("layer %d %s: no line says it was converted:\n%s", i, l.Digest, r.Stdout)
					continue
				}
				if g[2] != tc.conversion {
					t.Errorf("line %q says %q, want %q", g[0], g[2], tc.conversion)
				}
				// The blob the line names is the one the registry holds.
				resp, err := http.Head("http://" + host + "/v2/nixoci/progress/blobs/" + g[3])
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || fmt.Sprint(resp.ContentLength) != g[4] {
					t.Errorf("HEAD blob %s = %s, %d bytes; the line says %s bytes", g[3], resp.Status, resp.ContentLength, g[4])
				}
			}
		})
	}
}
