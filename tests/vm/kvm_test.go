package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKVM checks the two KVM paths of run-as-root against what this host's
// KVM does (probeKVM finds out without nixoci): where KVM boots a kernel,
// --accel kvm and auto run the VM under KVM; where /dev/kvm opens but KVM
// cannot boot, --accel kvm fails within the boot deadline, naming the
// missing boot report. Each subtest that does not apply to this host says
// so and skips: it cannot pass without checking anything.
func TestKVM(t *testing.T) {
	parts := requireVM(t)
	host := probeKVM(t, parts)
	t.Logf("this host: %s", host)
	bin := nixociBinary(t)
	dir := t.TempDir()
	base := writeBaseImage(t, dir)
	script := filepath.Join(dir, "setup.sh")
	if err := os.WriteFile(script, []byte(setupScript), 0o644); err != nil {
		t.Fatal(err)
	}
	runAccel := func(t *testing.T, out, accel string) (string, time.Duration, error) {
		start := time.Now()
		r := run(20*time.Minute, bin, append([]string{"run-as-root", "--image", base, "--script", script, "-o", out, "--accel", accel}, parts.Flags()...)...)
		return r.Stderr, time.Since(start), r.Err
	}

	t.Run("KVM boots: the VM runs under KVM", func(t *testing.T) {
		if host.openErr != nil || !host.boots {
			t.Skipf("not applicable: %s, so no run can use KVM here", host)
		}
		for _, accel := range []string{"kvm", "auto"} {
			stderr, wall, err := runAccel(t, filepath.Join(dir, "out-"+accel), accel)
			if err != nil {
				t.Fatalf("run-as-root --accel %s: %v\n%s", accel, err, stderr)
			}
			got, vmWall, kvmAttempt := vmLine(t, stderr)
			fmt.Printf("runAsRoot --accel %s: ran under %s, VM wall time %s; whole run-as-root %v\n", accel, got, vmWall, wall.Round(time.Millisecond))
			if got != "kvm" || kvmAttempt != "" || strings.Contains(stderr, "TCG") {
				t.Errorf("run-as-root --accel %s ran under %s (KVM attempt %q) where KVM boots, want kvm:\n%s", accel, got, kvmAttempt, stderr)
			}
		}
	})

	t.Run("KVM cannot boot: --accel kvm fails within the deadline", func(t *testing.T) {
		if host.openErr != nil || host.boots {
			t.Skipf("not applicable: %s", host)
		}
		out := filepath.Join(dir, "out-broken")
		stderr, wall, err := runAccel(t, out, "kvm")
		fmt.Printf("runAsRoot --accel kvm on a KVM that cannot boot: failed after %v\n", wall.Round(time.Millisecond))
		if err == nil {
			t.Fatalf("run-as-root --accel kvm succeeded where KVM cannot boot a kernel (%s):\n%s", host, stderr)
		}
		// A KVM that hangs misses the boot report; one that aborts makes
		// qemu exit (the error then quotes qemu's message).
		if !strings.Contains(stderr, `did not come up under KVM (runAsRootAccel "kvm", --accel kvm)`) ||
			!strings.Contains(stderr, "within the KVM boot deadline of 5s") && !strings.Contains(stderr, "qemu exited") {
			t.Errorf("run-as-root --accel kvm error does not name the missing boot report or qemu's exit:\n%s", stderr)
		}
		if strings.Contains(stderr, "under TCG") {
			t.Errorf("run-as-root --accel kvm fell back to TCG:\n%s", stderr)
		}
		// The deadline, plus writing the disks and initramfs and stopping qemu.
		if wall > 5*time.Second+time.Minute {
			t.Errorf("run-as-root --accel kvm took %v to fail, want the 5s boot deadline plus setup", wall)
		}
		noOutput(t, out)
	})
}
