package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// registryWait bounds how long a registry may take to answer GET /v2/.
const registryWait = 30 * time.Second

// FreeAddr returns a 127.0.0.1:PORT on which nothing listens right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	// Htpasswd, when set, is an htpasswd file that turns on basic auth.
	Htpasswd string
	// AccessLog logs every request (at level info) to the registry's log.
	AccessLog bool
}

// Registry is a docker-registry serving plain HTTP on 127.0.0.1.
type Registry struct {
	// Addr is its HOST:PORT.
	Addr string
	// Log is the file that holds what it printed.
	Log string
}

// StartRegistry starts docker-registry on a free 127.0.0.1 port with its
// config, storage and log in a temporary directory, waits until it answers
// and stops it when the test ends (showing its log if the test failed).
func StartRegistry(t testing.TB, ctx context.Context, o RegistryOptions) *Registry {
	t.Helper()
	RequireTools(t, "docker-registry")
	dir := t.TempDir()
	r := &Registry{Addr: FreeAddr(t), Log: filepath.Join(dir, "registry.log")}
	logConf := "  level: warn\n"
	if o.AccessLog {
		logConf = "  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
	}
	config := fmt.Sprintf("version: 0.1\nlog:\n%sstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		logConf, filepath.Join(dir, "data"), r.Addr)
	if o.Htpasswd != "" {
		config += fmt.Sprintf("auth:\n  htpasswd:\n    realm: nixoci-test\n    path: %s\n", o.Htpasswd)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	WriteFile(t, cfgPath, config, 0o644)
	logFile, err := os.Create(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting docker-registry: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(r.Log); err == nil {
				t.Logf("docker-registry log:\n%s", Tail(string(b), 100))
			}
		}
	})
	want := http.StatusOK
	if o.Htpasswd != "" {
		want = http.StatusUnauthorized
	}
	if err := pollRegistry(ctx, r.Addr, want, done); err != nil {
		b, _ := os.ReadFile(r.Log)
		t.Fatalf("docker-registry on %s: %v\n%s", r.Addr, err, Tail(string(b), 20))
	}
	return r
}

// WaitRegistry waits until the registry at addr answers GET /v2/ with 200,
// and calls Missing if it does not within 30 seconds.
func WaitRegistry(t testing.TB, ctx context.Context, addr string) {
	t.Helper()
	if err := pollRegistry(ctx, addr, http.StatusOK, nil); err != nil {
		Missing(t, "the registry at %s: %v", addr, err)
	}
}

// pollRegistry polls GET /v2/ on addr until it answers with 200 or want,
// for at most registryWait; exited closing stops it early.
func pollRegistry(ctx context.Context, addr string, want int, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, registryWait)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("making the request to GET /v2/: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == want {
				return nil
			}
			err = fmt.Errorf("GET /v2/ answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer to GET /v2/ within %v (last error: %w)", registryWait, last)
		case <-exited:
			return errors.New("docker-registry exited")
		case <-time.After(200 * time.Millisecond):
		}
	}
}
