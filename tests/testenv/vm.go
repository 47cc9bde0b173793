package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// VM is what the runAsRoot VM boots: qemu, a kernel and its module
// directory (the one holding modules.dep).
type VM struct {
	Qemu, Kernel, Modules string
}

// Flags are the `nixoci run-as-root` flags that name the VM's parts.
func (v VM) Flags() []string {
	return []string{"--kernel", v.Kernel, "--modules", v.Modules, "--qemu", v.Qemu}
}

// RequireVM finds qemu-system-x86_64 and a kernel with its modules: those
// NIXOCI_TEST_VM_KERNEL and NIXOCI_TEST_VM_MODULES name, else the newest
// readable /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep
// (Debian's linux-image-cloud-amd64). It calls Missing without them, and
// skips on other architectures, where the x86_64 kernel cannot boot.
func RequireVM(t testing.TB) VM {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the VM tests boot an x86_64 kernel; this is %s", runtime.GOARCH)
	}
	RequireTools(t, "qemu-system-x86_64")
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	v := VM{Qemu: q, Kernel: os.Getenv("NIXOCI_TEST_VM_KERNEL"), Modules: os.Getenv("NIXOCI_TEST_VM_MODULES")}
	if v.Kernel != "" && v.Modules != "" {
		return v
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	for _, k := range kernels {
		mods := filepath.Join("/lib/modules", strings.TrimPrefix(filepath.Base(k), "vmlinuz-"))
		if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
			continue
		}
		if f, err := os.Open(k); err == nil {
			f.Close()
			v.Kernel, v.Modules = k, mods
			return v
		}
	}
	Missing(t, "no readable /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep (Debian package linux-image-cloud-amd64)")
	return v
}
