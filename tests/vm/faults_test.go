package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFaults checks that each fault fails with a message that names its
// cause (and the option to change), and leaves no layer behind.
func TestFaults(t *testing.T) {
	parts := requireVM(t)
	bin := nixociBinary(t)
	dir := t.TempDir()
	base := writeBaseImage(t, dir)

	// A module directory whose modules.dep lacks overlay (and nothing is
	// built in), with the real module files.
	noOverlay := filepath.Join(dir, "modules-no-overlay")
	if err := os.MkdirAll(noOverlay, 0o755); err != nil {
		t.Fatal(err)
	}
	dep, err := os.ReadFile(filepath.Join(parts.Modules, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(dep), "\n") {
		if !strings.Contains(l, "overlay") {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(filepath.Join(noOverlay, "modules.dep"), []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(parts.Modules, "kernel"), filepath.Join(noOverlay, "kernel")); err != nil {
		t.Fatal(err)
	}
	notAKernel := filepath.Join(dir, "not-a-kernel")
	if err := os.WriteFile(notAKernel, []byte("this is not a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		script string
		flags  []string
		// want are substrings of the error output.
		want []string
		// vm is whether the VM boots (for the time printed).
		vm bool
	}{{
		name:   "script exits non-zero",
		script: "echo 'about to fail'\necho 'on stderr' >&2\nexit 3\n",
		want:   []string{"exited with status 3", "about to fail", "on stderr"},
		vm:     true,
	}, {
		name:   "scratch disk full",
		script: "dd if=/dev/zero of=/big bs=1M count=64\n",
		flags:  []string{"--disk-size", "16"},
		want:   []string{"diskSize", "16 MiB", "No space left on device"},
		vm:     true,
	}, {
		name:   "timeout",
		script: "echo 'sleeping forever'\nsleep 100000\n",
		flags:  []string{"--timeout", "90s"},
		want:   []string{"runAsRootTimeout", "1m30s", "Last console lines", "sleeping forever"},
		vm:     true,
	}, {
		// Little memory and a small swap, so the kernel kills the script
		// (after swapping, which takes a minute under TCG).
		name:   "out of memory",
		script: "echo start\nx=$(yes | head -c 700000000)\necho \"never ${#x}\"\n",
		flags:  []string{"--memory", "128", "--disk-size", "1"},
		want:   []string{"buildVMMemorySize", "128 MiB", "SIGKILL", "start"},
		vm:     true,
	}, {
		name:   "no shell and no #!",
		script: "rm -rf /\n",
		flags:  []string{"--shell", "/no/such/shell"},
		want:   []string{"/no/such/shell", "#!"},
		vm:     true,
	}, {
		name:   "VM does not boot",
		script: "true\n",
		flags:  []string{"--kernel", notAKernel},
		want:   []string{"the VM did not run", "Last console lines", "kernel"},
	}, {
		name:   "missing kernel",
		script: "true\n",
		flags:  []string{"--kernel", filepath.Join(dir, "no-such-vmlinuz")},
		want:   []string{"vmKernel", "no-such-vmlinuz"},
	}, {
		name:   "missing module",
		script: "true\n",
		flags:  []string{"--modules", noOverlay},
		want:   []string{"kernel module overlay", "vmModules", "modules.dep"},
	}, {
		name:   "missing module directory",
		script: "true\n",
		flags:  []string{"--modules", filepath.Join(dir, "no-such-modules")},
		want:   []string{"vmModules", "no-such-modules"},
	}, {
		name:   "missing qemu",
		script: "true\n",
		flags:  []string{"--qemu", filepath.Join(dir, "no-such-qemu")},
		want:   []string{"qemu", "no-such-qemu"},
	}}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script := filepath.Join(dir, "script.sh")
			if err := os.WriteFile(script, []byte(tc.script), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out", string(rune('a'+i)))
			args := append([]string{"run-as-root", "--image", base, "--script", script, "-o", out}, parts.Flags()...)
			args = append(args, tc.flags...) // later flags win
			start := time.Now()
			r := run(10*time.Minute, bin, args...)
			stderr, err := r.Stderr, r.Err
			if tc.vm {
				t.Logf("VM wall time: %v", time.Since(start).Round(time.Millisecond))
			}
			if err == nil {
				t.Fatalf("run-as-root succeeded, want an error containing %q\n%s", tc.want, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("run-as-root error does not mention %q:\n%s", w, stderr)
				}
			}
			noOutput(t, out)
		})
	}
}
