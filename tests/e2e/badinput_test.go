package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixoci/nixoci/tests/testenv"
	"golang.org/x/crypto/bcrypt"
)

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// failing runs nixoci expecting a non-zero exit whose stderr names every
// string in want.
func failing(t *testing.T, ctx context.Context, want []string, args ...string) testenv.Result {
	t.Helper()
	r := testenv.Run(ctx, nixoci(t), args...)
	if r.Err == nil {
		t.Fatalf("nixoci %s succeeded, want a failure:\n%s", strings.Join(args, " "), r)
	}
	if ctx.Err() != nil {
		t.Fatalf("nixoci %s timed out:\n%s", strings.Join(args, " "), r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("nixoci %s: stderr does not name %q:\n%s", strings.Join(args, " "), w, r.Stderr)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.Stderr), "\n"); n > 3 {
		t.Errorf("nixoci %s: want one clear error, got %d lines:\n%s", strings.Join(args, " "), n+1, r.Stderr)
	}
	return r
}

// TestBadBuildInput checks that `nixoci layers` and `nixoci image` reject bad
// input with an error naming the offending file or path, and write nothing.
func TestBadBuildInput(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	good := buildImage(t, ctx, s)
	goodLayers := filepath.Join(filepath.Dir(good.Path), "layers.json")

	tests := []struct {
		name  string
		files map[string]string // written into the work dir first
		// args get "{dir}" replaced by the work dir.
		args []string
		want []string
	}{{
		name: "missing store path",
		args: []string{"layers", "-o", "{dir}/out.json", s.Busybox, s.Dir + "/3d0w8g5kene6n4g9r5y4qy06wm7p39dd-gone"},
		want: []string{s.Dir + "/3d0w8g5kene6n4g9r5y4qy06wm7p39dd-gone", "does not exist"},
	}, {
		name:  "bad perms regex",
		files: map[string]string{"perms.json": fmt.Sprintf(`[{"path": %q, "regex": "bin/(busybox", "mode": "0700"}]`, s.Busybox)},
		args:  []string{"layers", "-o", "{dir}/out.json", "--perms", "{dir}/perms.json", s.Busybox},
		want:  []string{"perms.json", "bin/(busybox"},
	}, {
		name:  "bad perms mode",
		files: map[string]string{"perms.json": fmt.Sprintf(`[{"path": %q, "regex": ".*", "mode": "rwx"}]`, s.Busybox)},
		args:  []string{"layers", "-o", "{dir}/out.json", "--perms", "{dir}/perms.json", s.Busybox},
		want:  []string{"perms.json", `"rwx"`},
	}, {
		name:  "malformed history",
		files: map[string]string{"history.json": `{"created_by": `},
		args:  []string{"layers", "-o", "{dir}/out.json", "--history", "{dir}/history.json", s.Busybox},
		want:  []string{"history.json"},
	}, {
		name:  "malformed closure graph",
		files: map[string]string{"graph.json": `{"closure": [`},
		args:  []string{"layers", "-o", "{dir}/out.json", "--closure-graph", "{dir}/graph.json"},
		want:  []string{"graph.json"},
	}, {
		name:  "malformed excluded layers",
		files: map[string]string{"excl.json": `[1, 2`},
		args:  []string{"layers", "-o", "{dir}/out.json", "--exclude-layers", "{dir}/excl.json", s.Busybox},
		want:  []string{"excl.json"},
	}, {
		name: "missing output",
		args: []string{"layers", s.Busybox},
		want: []string{"missing -o"},
	}, {
		name: "unknown compression",
		args: []string{"layers", "-o", "{dir}/out.json", "--compression", "xz", s.Busybox},
		want: []string{`"xz"`, "gzip"},
	}, {
		name:  "malformed layers descriptor",
		files: map[string]string{"layers.json": `{"nixoci": 1, "layers": [`},
		args:  []string{"image", "-o", "{dir}/out.json", "--name", "x", "{dir}/layers.json"},
		want:  []string{"layers.json"},
	}, {
		name:  "unknown layers version",
		files: map[string]string{"layers.json": `{"nixoci": 99, "layers": []}`},
		args:  []string{"image", "-o", "{dir}/out.json", "--name", "x", "{dir}/layers.json"},
		want:  []string{"layers.json", "99", "version 1"},
	}, {
		name:  "malformed config",
		files: map[string]string{"config.json": `{"Entrypoint": "not a list"}`},
		args:  []string{"image", "-o", "{dir}/out.json", "--name", "x", "--config", "{dir}/config.json", goodLayers},
		want:  []string{"config.json"},
	}, {
		name:  "unknown base image version",
		files: map[string]string{"base.json": `{"nixoci": 7, "architecture": "amd64", "os": "linux", "config": {}, "layers": []}`},
		args:  []string{"image", "-o", "{dir}/out.json", "--name", "x", "--from-image", "{dir}/base.json", goodLayers},
		want:  []string{"base.json", "7", "version 1"},
	}, {
		name: "missing layers descriptor",
		args: []string{"image", "-o", "{dir}/out.json", "--name", "x", "{dir}/nope.json"},
		want: []string{"nope.json"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				testenv.WriteFile(t, filepath.Join(dir, name), content, 0o644)
			}
			before := listDir(t, dir)
			var args []string
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "{dir}", dir))
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "{dir}", dir))
			}
			failing(t, ctx, want, args...)
			if after := listDir(t, dir); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("failed command left files behind: before %v, after %v", before, after)
			}
		})
	}
}

// TestBadImageInput checks the commands that read an image descriptor.
func TestBadImageInput(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	dir := t.TempDir()
	malformed := filepath.Join(dir, "malformed.json")
	testenv.WriteFile(t, malformed, `{"nixoci": 1, "layers": [}`, 0o644)
	future := filepath.Join(dir, "future.json")
	testenv.WriteFile(t, future, `{"nixoci": 42, "architecture": "amd64", "os": "linux", "config": {}, "layers": []}`, 0o644)
	oci := "oci:" + filepath.Join(dir, "layout") + ":t"
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"inspect malformed", []string{"inspect", "nix:" + malformed}, []string{malformed}},
		{"verify malformed", []string{"verify", "nix:" + malformed}, []string{malformed}},
		{"copy malformed", []string{"copy", "nix:" + malformed, oci}, []string{malformed}},
		{"inspect unknown version", []string{"inspect", "nix:" + future}, []string{future, "42", "version 1"}},
		{"copy unknown version", []string{"copy", "nix:" + future, oci}, []string{future, "42", "version 1"}},
		{"inspect missing", []string{"inspect", "nix:" + dir + "/missing.json"}, []string{dir + "/missing.json"}},
		{"copy unknown transport", []string{"copy", "nix:" + future, "nosuch:somewhere"}, []string{`"nosuch"`}},
		{"copy unknown source transport", []string{"copy", "nosuch2:x", oci}, []string{`"nosuch2"`}},
		{"inspect other transport", []string{"inspect", "docker://example.invalid/x"}, []string{"docker"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failing(t, ctx, tt.want, tt.args...)
		})
	}
}

// TestGarbageCollectedPath removes a store path after the descriptor was
// built: copy and verify must name it, and the failed copy to an OCI layout
// must not leave an image that looks valid.
func TestGarbageCollectedPath(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	s := newStore(t)
	img := buildImage(t, ctx, s)
	if err := os.RemoveAll(s.Data); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	failing(t, ctx, []string{s.Data}, "copy", "nix:"+img.Path, "oci:"+layout+":v1")
	if _, err := osexec.LookPath("skopeo"); err == nil {
		if r := testenv.Run(ctx, "skopeo", "inspect", "oci:"+layout+":v1"); r.Err == nil {
			t.Errorf("after a failed copy, skopeo inspect oci:%s:v1 succeeded: the layout looks valid:\n%s", layout, r.Stdout)
		}
	}
	failing(t, ctx, []string{s.Data}, "verify", "nix:"+img.Path)
}

// TestRegistryFaults checks wrong credentials and an unreachable registry.
func TestRegistryFaults(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	img := buildImage(t, ctx, newStore(t))

	t.Run("unreachable", func(t *testing.T) {
		addr := testenv.FreeAddr(t)
		failing(t, ctx, []string{addr}, "copy", "--dest-tls-verify=false", "nix:"+img.Path, "docker://"+addr+"/nixoci/x:v1")
	})

	t.Run("wrong credentials", func(t *testing.T) {
		testenv.RequireTools(t, "docker-registry")
		hash, err := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(t.TempDir(), "htpasswd")
		testenv.WriteFile(t, htpasswd, "nixoci:"+string(hash)+"\n", 0o644)
		reg := testenv.StartRegistry(t, ctx, testenv.RegistryOptions{Htpasswd: htpasswd}).Addr
		ref := "docker://" + reg + "/nixoci/auth:v1"
		failing(t, ctx, []string{reg}, "copy", "--dest-tls-verify=false", "--dest-creds", "nixoci:wrong-password", "nix:"+img.Path, ref)

		// The right password works, from the flag and from an auth file.
		testenv.Must(t, ctx, nixoci(t), "copy", "--dest-tls-verify=false", "--dest-creds", "nixoci:right-password", "nix:"+img.Path, ref)
		auth := filepath.Join(t.TempDir(), "auth.json")
		testenv.WriteFile(t, auth, fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg, basicAuth("nixoci", "right-password")), 0o600)
		testenv.Must(t, ctx, nixoci(t), "copy", "--dest-tls-verify=false", "--authfile", auth, "nix:"+img.Path, ref+"-authfile")
	})
}

// basicAuth is the "auth" value of a containers-auth.json entry.
func basicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// TestUnreadableFile makes one file of a store path unreadable: `nixoci
// layers` must fail naming it. Root reads every file, so under root the
// binary runs as user nobody.
func TestUnreadableFile(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	s := newStore(t)
	secret := filepath.Join(s.Data, "share", "secret.txt")
	testenv.WriteFile(t, secret, "secret\n", 0o400)
	bin := nixoci(t)
	out := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	// Let another user reach the binary, the store and the output directory
	// (only directories this test run made under the temporary directory).
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for _, p := range []string{bin, s.Data, out} {
		for d := p; strings.HasPrefix(d, tmp); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				if err := os.Chmod(d, fi.Mode().Perm()|0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := osexec.CommandContext(ctx, bin, "layers", "-o", filepath.Join(out, "layers.json"), s.Data)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatalf("nixoci layers succeeded on an unreadable file %s", secret)
	}
	if !strings.Contains(stderr.String(), secret) && !strings.Contains(stderr.String(), "share/secret.txt") {
		t.Errorf("nixoci layers: stderr does not name %s:\n%s", secret, stderr.String())
	}
	if names := listDir(t, out); len(names) != 0 {
		t.Errorf("failed command left %v in the output directory", names)
	}
}
