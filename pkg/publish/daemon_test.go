package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/tests/testenv"
)

// needDocker skips without a docker daemon and CLI, except under CI=true.
func needDocker(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("docker"); err != nil {
		why = err.Error()
	} else if _, err := os.Stat("/var/run/docker.sock"); err != nil && os.Getenv("DOCKER_HOST") == "" {
		why = err.Error()
	} else if _, err := os.Stat("/bin/busybox"); err != nil {
		why = "busybox-static: " + err.Error()
	}
	if why != "" {
		testenv.Missing(t, "docker is not usable: %s", why)
	}
}

func TestCopyToDockerDaemon(t *testing.T) {
	needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(nonce)
	// The nonce makes the base layer new to the daemon.
	base := tree(t, map[string]string{"bin/busybox": string(busybox), "etc/nonce": id})
	top := tree(t, map[string]string{"hello.txt": "hello from " + id + "\n"})
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	imgA := writeImage(t, dirA, descriptor.Gzip, []string{"/bin/busybox", "cat", "/etc/nonce"}, rooted(base))
	imgB := writeImage(t, dirB, descriptor.Gzip, []string{"/bin/busybox", "cat", "/hello.txt"}, rooted(base), rooted(top))
	tagA, tagB := "nixoci-test/publish-a:"+id, "nixoci-test/publish-b:"+id
	t.Cleanup(func() {
		for _, tag := range []string{tagB, tagA} {
			if out, err := exec.Command("docker", "rmi", "-f", tag).CombinedOutput(); err != nil {
				t.Logf("docker rmi %s: %v\n%s", tag, err, out)
			}
		}
	})

	var first, second bytes.Buffer
	if err := Copy(ctx, "nix:"+dirA, "docker-daemon:"+tagA, Options{Progress: &first}); err != nil {
		t.Fatalf("Copy(a) = %v", err)
	}
	if line := "layer " + imgA.Layers[0].DiffID.String() + ": loaded"; !strings.Contains(first.String(), line) {
		t.Errorf("Copy(a) report lacks %q:\n%s", line, first.String())
	}
	if err := Copy(ctx, "nix:"+dirB, "docker-daemon:"+tagB, Options{Progress: &second}); err != nil {
		t.Fatalf("Copy(b) = %v", err)
	}
	for _, line := range []string{
		"layer " + imgB.Layers[0].DiffID.String() + ": skipped: already exists",
		"layer " + imgB.Layers[1].DiffID.String() + ": loaded",
	} {
		if !strings.Contains(second.String(), line) {
			t.Errorf("Copy(b) report lacks %q:\n%s", line, second.String())
		}
	}
	t.Logf("report:\n%s%s", first.String(), second.String())
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", tagB).CombinedOutput()
	if err != nil {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), imgB.Layers[0].DiffID.String()+" "+imgB.Layers[1].DiffID.String(); got != want {
		t.Errorf("diff_ids in docker = %s, want %s", got, want)
	}
	out, err = exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", tagB).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", tagB, err, out)
	}
	if want := "hello from " + id + "\n"; string(out) != want {
		t.Errorf("docker run %s printed %q, want %q", tagB, out, want)
	}
}

func TestCopyToDockerDaemonUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no.sock"))
	dir, _ := twoLayerImage(t)
	err := Copy(testContext(t), "nix:"+dir, "docker-daemon:nixoci-test/x:y", Options{})
	if err == nil || !strings.Contains(err.Error(), "dockerd") {
		t.Fatalf("Copy() to an absent daemon = %v, want an error saying to check dockerd", err)
	}
	t.Logf("Copy() = %v", err)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Copy() = %v, want ErrUnreachable", err)
	}
}
