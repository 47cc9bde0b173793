package options

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/vm"
)

// runAsRootApp is an app with run-as-root's flags that keeps what Before
// and the action saw.
func runAsRootApp(o *RunAsRootOptions, ran *bool) *cli.App {
	return &cli.App{
		Name: "t",
		Commands: []*cli.Command{{
			Name:   "run-as-root",
			Flags:  o.Flags(),
			Before: Before(o),
			Action: func(*cli.Context) error { *ran = true; return nil },
		}},
	}
}

func TestRunAsRootFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	img, script, layers, graph := file("image.json"), file("setup.sh"), file("layers.json"), file("graph.json")
	t.Setenv("NIXOCI_VM_KERNEL", "/boot/vmlinuz")
	t.Setenv("NIXOCI_VM_MODULES", "/lib/modules/x")
	base := []string{"t", "run-as-root", "--image", img, "--script", script, "-o", filepath.Join(dir, "out")}

	var o RunAsRootOptions
	ran := false
	args := append(append([]string(nil), base...), "--layers", layers, "--closure-graph", graph, "--store-path", "/nix/store/a",
		"--env", "A=1", "--accel", "tcg", "--kvm-boot-deadline", "2s", "--created", "2024-01-02T03:04:05Z", "--memory", "256")
	if err := runAsRootApp(&o, &ran).Run(args); err != nil || !ran {
		t.Fatalf("run-as-root %v: %v (action ran: %v)", args, err, ran)
	}
	got, err := o.VM(nil)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	want := vm.Options{
		Image: img, Layers: []string{layers}, Script: script, StorePaths: []string{"/nix/store/a"}, ClosureGraphs: []string{graph},
		Env: []string{"A=1"}, Kernel: "/boot/vmlinuz", Modules: "/lib/modules/x", Qemu: DefaultQemu(),
		DiskSizeMiB: vm.DefaultDiskSizeMiB, MemoryMiB: 256, Timeout: vm.DefaultTimeout, Created: &created,
		Compression: "gzip", Accel: vm.AccelTCG, KVMBootDeadline: 2 * time.Second, Output: filepath.Join(dir, "out"),
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(vm.Options{})); diff != "" {
		t.Errorf("VM() (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"default accel", nil, ""},
		{"bad accel", []string{"--accel", "hvf"}, `--accel "hvf"`},
		{"bad compression", []string{"--compression", "xz"}, `--compression "xz"`},
		{"bad created", []string{"--created", "soon"}, `--created: created time "soon"`},
		{"negative deadline", []string{"--kvm-boot-deadline", "-1s"}, "--kvm-boot-deadline"},
		{"small memory", []string{"--memory", "64"}, "buildVMMemorySize (--memory)"},
		{"missing script", []string{"--script", filepath.Join(dir, "nope.sh")}, "--script " + filepath.Join(dir, "nope.sh")},
		{"missing graph", []string{"--closure-graph", filepath.Join(dir, "nope.json")}, "--closure-graph " + filepath.Join(dir, "nope.json")},
		{"an argument", []string{"extra"}, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o RunAsRootOptions
			ran := false
			err := runAsRootApp(&o, &ran).Run(append(append([]string(nil), base...), tc.extra...))
			switch {
			case tc.want == "" && (err != nil || !ran):
				t.Errorf("run-as-root %v = %v, want it to run", tc.extra, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("run-as-root %v = %v, want an error containing %q", tc.extra, err, tc.want)
			case tc.want != "" && ran:
				t.Errorf("run-as-root %v: the action ran after a validation error", tc.extra)
			}
			if tc.want == "" && o.Accel != vm.AccelAuto {
				t.Errorf("--accel default = %q, want auto", o.Accel)
			}
		})
	}
}
