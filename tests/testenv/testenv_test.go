package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 3, "a\nb\nc"},
		{"a\nb\nc\nd\n", 2, "c\nd"},
		{"a\nb\nc", 1, "c"},
		{"a\n\n\n", 5, "a"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q/%d", tc.in, tc.n), func(t *testing.T) {
			if got := Tail(tc.in, tc.n); got != tc.want {
				t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

func TestCmdRun(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		cmd        Cmd
		ctxTimeout time.Duration
		wantOut    string
		wantErr    string // substring of the error; "" for none
		wantCode   int
	}{{
		name:    "output, environment and directory",
		cmd:     Cmd{Name: "sh", Args: []string{"-c", `echo "$TESTENV_X"; pwd; echo to-stderr >&2`}, Env: []string{"TESTENV_X=x1"}, Dir: dir},
		wantOut: "x1\n" + dir + "\n",
	}, {
		name:     "exit status",
		cmd:      Cmd{Name: "sh", Args: []string{"-c", "echo partial; exit 3"}},
		wantOut:  "partial\n",
		wantErr:  "exit status 3",
		wantCode: 3,
	}, {
		name:     "timeout",
		cmd:      Cmd{Name: "sleep", Args: []string{"30"}, Timeout: 200 * time.Millisecond},
		wantErr:  "sleep timed out after 200ms",
		wantCode: -1,
	}, {
		name:       "context deadline",
		cmd:        Cmd{Name: "sleep", Args: []string{"30"}},
		ctxTimeout: 200 * time.Millisecond,
		wantErr:    context.DeadlineExceeded.Error(),
		wantCode:   -1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			start := time.Now()
			r := tc.cmd.Run(ctx)
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("Run took %v, want it stopped at its bound", took)
			}
			if r.Stdout != tc.wantOut {
				t.Errorf("Run().Stdout = %q, want %q", r.Stdout, tc.wantOut)
			}
			switch {
			case tc.wantErr == "" && r.Err != nil:
				t.Errorf("Run().Err = %v, want nil", r.Err)
			case tc.wantErr != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr)):
				t.Errorf("Run().Err = %v, want an error containing %q", r.Err, tc.wantErr)
			}
			if r.State == nil || r.State.ExitCode() != tc.wantCode {
				t.Errorf("Run().State = %v, want exit code %d", r.State, tc.wantCode)
			}
		})
	}
	if r := (Cmd{Name: "sh", Args: []string{"-c", "echo to-stderr >&2"}}).Run(context.Background()); r.Stderr != "to-stderr\n" {
		t.Errorf("Run().Stderr = %q, want %q", r.Stderr, "to-stderr\n")
	}
	if r := Run(context.Background(), filepath.Join(dir, "no-such-program")); r.Err == nil || r.State != nil {
		t.Errorf("Run(missing program) = %v, state %v, want an error and no state", r.Err, r.State)
	}
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestMissing(t *testing.T) {
	tests := []struct {
		ci                    string
		wantSkipped, wantFail bool
	}{
		{ci: "", wantSkipped: true},
		{ci: "false", wantSkipped: true},
		{ci: "true", wantFail: true},
	}
	for _, tc := range tests {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			if got := InCI(); got != tc.wantFail {
				t.Errorf("InCI() = %v with CI=%q, want %v", got, tc.ci, tc.wantFail)
			}
			for name, call := range map[string]func(testing.TB){
				"Missing":      func(tb testing.TB) { Missing(tb, "thing %d is gone", 7) },
				"RequireTools": func(tb testing.TB) { RequireTools(tb, "sh", "nixoci-no-such-tool") },
			} {
				r := &recorder{TB: t}
				call(r)
				if (r.skipped != "") != tc.wantSkipped || (r.failed != "") != tc.wantFail {
					t.Errorf("%s with CI=%q: skipped %q, failed %q; want skipped %v, failed %v", name, tc.ci, r.skipped, r.failed, tc.wantSkipped, tc.wantFail)
				}
				msg := r.skipped + r.failed
				if name == "Missing" && !strings.Contains(msg, "thing 7 is gone") || name == "RequireTools" && !strings.Contains(msg, "nixoci-no-such-tool is not installed") {
					t.Errorf("%s with CI=%q said %q, want it to name what is missing", name, tc.ci, msg)
				}
			}
		})
	}
	r := &recorder{TB: t}
	RequireTools(r, "sh", "go")
	if r.skipped != "" || r.failed != "" {
		t.Errorf("RequireTools(sh, go) skipped %q, failed %q; want neither", r.skipped, r.failed)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a", "b", "src.txt")
	WriteFile(t, src, "content\n", 0o640)
	dst := filepath.Join(dir, "c", "dst.txt")
	CopyFile(t, src, dst, 0o555)
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{src, 0o640}, {dst, 0o555}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.path, fi.Mode().Perm(), tc.mode)
		}
		if got := string(ReadFile(t, tc.path)); got != "content\n" {
			t.Errorf("ReadFile(%s) = %q, want %q", tc.path, got, "content\n")
		}
	}
}

func TestReadTar(t *testing.T) {
	type entry struct {
		Name, Link, Body string
		Type             byte
	}
	want := []entry{
		{Name: "dir/", Type: tar.TypeDir},
		{Name: "dir/file", Type: tar.TypeReg, Body: "hello\n"},
		{Name: "dir/link", Type: tar.TypeSymlink, Link: "file"},
		{Name: "empty", Type: tar.TypeReg},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range want {
		if err := tw.WriteHeader(&tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Link, Mode: 0o644, Size: int64(len(e.Body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "x.tar")
	WriteFile(t, file, buf.String(), 0o644)
	var got []entry
	for _, e := range ReadTar(t, file) {
		got = append(got, entry{Name: e.Header.Name, Link: e.Header.Linkname, Body: e.Body, Type: e.Header.Typeflag})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadTar() differs from what was written (-want +got):\n%s", diff)
	}
}

// TestIsStatic compares isStatic with ldd's verdict on a few programs.
func TestIsStatic(t *testing.T) {
	RequireTools(t, "ldd")
	text := filepath.Join(t.TempDir(), "text")
	WriteFile(t, text, "#!/bin/sh\n", 0o755)
	if isStatic(text) || isStatic(filepath.Join(t.TempDir(), "missing")) {
		t.Errorf("isStatic is true for a script or a missing file")
	}
	checked := 0
	for _, name := range []string{"busybox", "ls", "sh", "go"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		out, _ := exec.Command("ldd", p).CombinedOutput()
		want := strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked")
		if got := isStatic(p); got != want {
			t.Errorf("isStatic(%s) = %v, want %v (ldd said %q)", p, got, want, out)
		}
		checked++
	}
	if checked < 2 {
		t.Errorf("checked %d programs, want at least ls and sh", checked)
	}
	if bb := StaticBusybox(t); !isStatic(bb) {
		t.Errorf("StaticBusybox() = %s, which is not static", bb)
	} else if r := Run(context.Background(), bb, "echo", "ok"); r.Err != nil || r.Stdout != "ok\n" {
		t.Errorf("%s echo ok: %v", bb, r)
	}
}

func TestStartRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	WriteFile(t, htpasswd, "u:"+string(hash)+"\n", 0o644)
	tests := []struct {
		name string
		o    RegistryOptions
		want int
	}{
		{"plain", RegistryOptions{}, http.StatusOK},
		{"access log", RegistryOptions{AccessLog: true}, http.StatusOK},
		{"basic auth", RegistryOptions{Htpasswd: htpasswd}, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := StartRegistry(t, ctx, tc.o)
			if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
				t.Errorf("StartRegistry().Addr = %s, want 127.0.0.1:PORT", r.Addr)
			}
			resp, err := http.Get("http://" + r.Addr + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET /v2/ = %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.o.AccessLog {
				// The access log is written as the request is served.
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(string(ReadFile(t, r.Log)), `"GET /v2/ HTTP/1.1" 200`) {
					if time.Now().After(deadline) {
						t.Fatalf("registry log %s has no access log line for GET /v2/:\n%s", r.Log, ReadFile(t, r.Log))
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}

	// Nothing listens on a free address: polling gives up at the context.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := pollRegistry(short, FreeAddr(t), http.StatusOK, nil); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("pollRegistry(nothing listening) = %v, want no answer", err)
	}
	exited := make(chan struct{})
	close(exited)
	if err := pollRegistry(ctx, FreeAddr(t), http.StatusOK, exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("pollRegistry(exited) = %v, want an error saying it exited", err)
	}
}

func TestOnceBuildEnv(t *testing.T) {
	b := &OnceBuild{Env: "TESTENV_PREBUILT"}
	t.Setenv("TESTENV_PREBUILT", "/prebuilt/nixoci")
	if got := b.Path(t); got != "/prebuilt/nixoci" {
		t.Errorf("Path() = %q with TESTENV_PREBUILT set, want %q", got, "/prebuilt/nixoci")
	}
	if b.dir != "" {
		t.Errorf("Path() built into %s although a prebuilt binary was given", b.dir)
	}
	b.Remove()
}

func TestNix(t *testing.T) {
	dir := t.TempDir()
	n := NewNix(t, dir)
	if got := string(ReadFile(t, filepath.Join(n.ConfDir, "nix.conf"))); got != NixConf {
		t.Errorf("nix.conf = %q, want %q", got, NixConf)
	}
	if got := n.Must(t, time.Minute, "nix-instantiate", "--eval", "-E", "1 + 41"); strings.TrimSpace(got) != "42" {
		t.Errorf("nix-instantiate --eval 1 + 41 printed %q, want 42", got)
	}
	// The configuration is the one Nix reads.
	conf := n.Must(t, time.Minute, "nix", "show-config")
	if !strings.Contains(conf, "sandbox = false") {
		t.Errorf("nix show-config does not show NixConf's sandbox = false:\n%s", Tail(conf, 20))
	}
	file := filepath.Join(dir, "tool")
	WriteFile(t, file, fmt.Sprintf("#!/bin/sh\necho %d\n", time.Now().UnixNano()), 0o755)
	p := n.AddBin(t, filepath.Join(dir, "pkg"), "tool", file, "alias")
	if !strings.HasPrefix(p, "/nix/store/") || strings.ContainsAny(p, "\n ") {
		t.Fatalf("AddBin() = %q, want one store path", p)
	}
	if got, want := ReadFile(t, filepath.Join(p, "bin", "tool")), ReadFile(t, file); !bytes.Equal(got, want) {
		t.Errorf("%s/bin/tool = %q, want %q", p, got, want)
	}
	if target, err := os.Readlink(filepath.Join(p, "bin", "alias")); err != nil || target != "tool" {
		t.Errorf("%s/bin/alias links to %q (%v), want tool", p, target, err)
	}
	if r := n.Run(time.Minute, "nix-instantiate", "--eval", "-E", "throw \"boom\""); r.Err == nil || !strings.Contains(r.Stderr, "boom") {
		t.Errorf("nix-instantiate of a throw: %v, want an error naming boom:\n%s", r.Err, r.Stderr)
	}
}
