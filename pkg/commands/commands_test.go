package commands

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestHelp checks every subcommand, hidden ones and their subcommands
// included: each has --help with a usage line, and every visible one is
// listed by `nixoci --help` and shows an example.
func TestHelp(t *testing.T) {
	root := help(t, "--help")
	var walk func(prefix []string, cmds []*cli.Command)
	count := 0
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			path := append(append([]string(nil), prefix...), c.Name)
			count++
			t.Run(strings.Join(path, " "), func(t *testing.T) {
				out := help(t, append(path, "--help")...)
				if !strings.Contains(out, "nixoci "+strings.Join(path, " ")) {
					t.Errorf("nixoci %s --help lacks its usage line:\n%s", strings.Join(path, " "), out)
				}
				if c.Usage == "" {
					t.Errorf("nixoci %s has no usage text", strings.Join(path, " "))
				}
				if !c.Hidden && len(prefix) == 0 {
					if !strings.Contains(root, "   "+c.Name+" ") {
						t.Errorf("nixoci --help does not list %s:\n%s", c.Name, root)
					}
					if !strings.Contains(out, "Example") {
						t.Errorf("nixoci %s --help shows no example:\n%s", c.Name, out)
					}
				}
			})
			walk(path, c.Subcommands)
		}
	}
	walk(nil, New().Commands)
	if count < 10 {
		t.Errorf("found %d subcommands, want every one of layers, image, inspect, copy, verify, image-from-dir, image-from-manifest, nix-build (and get-manifest), run-as-root", count)
	}
}

// help runs nixoci with args and returns what it printed.
func help(t *testing.T, args ...string) string {
	t.Helper()
	app := New()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	if err := app.Run(append([]string{"nixoci"}, args...)); err != nil {
		t.Fatalf("nixoci %s = %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestFormatError checks that a too-long path gives a short message that
// still shows where the path starts and ends.
func TestFormatError(t *testing.T) {
	long := "/tmp/" + strings.Repeat("a", 5000) + "/end"
	msg := FormatError(fmt.Errorf("reading %s: open %s: no such file or directory", long, long))
	if len(msg) > 1000 {
		t.Errorf("FormatError() = %d bytes, want under 1000", len(msg))
	}
	for _, want := range []string{"reading /tmp/aaa", "/end (5009 characters)", "no such file or directory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("FormatError() = %q, want it to contain %q", msg, want)
		}
	}
	short := "layer 0: file /nix/store/x/bin/y changed"
	if got := FormatError(errors.New(short)); got != short {
		t.Errorf("FormatError(%q) = %q, want it unchanged", short, got)
	}
	huge := FormatError(errors.New(strings.Repeat("word ", 5000)))
	if !strings.HasSuffix(huge, "more characters)") || len(huge) > maxMessage+100 {
		t.Errorf("FormatError(25000 characters) = %d characters, want it bounded", len(huge))
	}
}
