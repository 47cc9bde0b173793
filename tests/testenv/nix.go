package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NixConf is the nix.conf every Nix command of the tests runs with:
// single-user without build users, no sandbox (builders run programs from
// outside the store), no binary cache (none is reachable), and the nix
// command (for `nix run`, `nix hash`).
const NixConf = `build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
`

// Nix runs single-user Nix as root with its own configuration, so that
// /etc/nix/nix.conf is not needed.
type Nix struct {
	// ConfDir holds nix.conf; NIX_CONF_DIR points at it.
	ConfDir string
}

// NewNix checks that single-user Nix can run here (RequireNix) and writes
// NixConf into dir/nix-conf.
func NewNix(t testing.TB, dir string) *Nix {
	t.Helper()
	RequireNix(t)
	n := &Nix{ConfDir: filepath.Join(dir, "nix-conf")}
	WriteFile(t, filepath.Join(n.ConfDir, "nix.conf"), NixConf, 0o644)
	return n
}

// Env is what a Nix command adds to the environment: the configuration,
// and no NIX_PATH.
func (n *Nix) Env() []string {
	return []string{"NIX_CONF_DIR=" + n.ConfDir, "NIX_PATH="}
}

// Run runs a command with n's environment for at most timeout.
func (n *Nix) Run(timeout time.Duration, name string, args ...string) Result {
	return Cmd{Name: name, Args: args, Env: n.Env(), Timeout: timeout}.Run(context.Background())
}

// Must is Run that fails the test when the command fails; it returns the
// standard output.
func (n *Nix) Must(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	return Cmd{Name: name, Args: args, Env: n.Env(), Timeout: timeout}.Must(t, context.Background()).Stdout
}

// AddBin adds dir, made to hold bin/NAME (a copy of file) and bin/LINK
// symlinks to it, to the store and returns the store path.
func (n *Nix) AddBin(t testing.TB, dir, name, file string, links ...string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	CopyFile(t, file, filepath.Join(bin, name), 0o555)
	for _, l := range links {
		if err := os.Symlink(name, filepath.Join(bin, l)); err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(n.Must(t, 2*time.Minute, "nix-store", "--add", dir))
}
