package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// InCI reports whether CI=true, under which a missing component fails the
// test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing stops the test because a component it needs is missing: it skips
// the test outside CI and fails it under CI=true. format and args say what
// is missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true but %s", msg)
		return
	}
	t.Skipf("skipping: %s (.ci/run sets it up; under CI=true this fails)", msg)
}

// RequireTools calls Missing unless every named program is on PATH.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if pkg := debianPackage(n); pkg != "" {
				Missing(t, "%s is not installed (Debian package %s)", n, pkg)
			} else {
				Missing(t, "%s is not installed", n)
			}
		}
	}
}

// debianPackage names the Debian package that installs program, or "".
func debianPackage(program string) string {
	switch program {
	case "nix", "nix-build", "nix-instantiate", "nix-store":
		return "nix-bin"
	case "docker":
		return "docker.io"
	case "docker-registry", "skopeo", "podman", "umoci":
		return program
	case "qemu-system-x86_64":
		return "qemu-system-x86"
	case "busybox":
		return "busybox-static"
	}
	return ""
}

// RequireRoot calls Missing unless the test runs as root; what says what
// needs root.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "not running as root, which %s needs", what)
	}
}

// RequireDocker calls Missing unless the docker CLI reaches a running
// daemon within 30 seconds.
func RequireDocker(t testing.TB) {
	t.Helper()
	RequireTools(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r := Run(ctx, "docker", "info"); r.Err != nil {
		Missing(t, "dockerd is not reachable (docker.io; start it with `dockerd --bridge=none --iptables=false`): %v: %s", r.Err, Tail(r.Stderr, 5))
	}
}

// RequireNix calls Missing unless single-user Nix can run here: the nix-bin
// programs are installed and the test runs as root (it writes /nix).
func RequireNix(t testing.TB) {
	t.Helper()
	RequireTools(t, "nix", "nix-build", "nix-instantiate", "nix-store")
	RequireRoot(t, "single-user Nix (it writes /nix)")
}
