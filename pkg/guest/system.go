package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nixoci/nixoci/pkg/vm/wire"
)

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func doMount(m mount) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("creating mount point %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mounting %s on %s (%s): %w", m.fstype, m.target, m.data, err)
	}
	return nil
}

// mountBase mounts /proc, /sys and /dev of the guest itself.
func mountBase() error {
	for _, m := range []mount{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	} {
		if err := doMount(m); err != nil {
			return err
		}
	}
	return nil
}

// loadModules loads the modules the initramfs lists, in order. A module
// already loaded is fine.
func loadModules() (int, error) {
	order, err := os.ReadFile(filepath.Join(wire.ModulesDir, wire.ModulesOrder))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading module list: %w", err)
	}
	n := 0
	for _, name := range strings.Fields(string(order)) {
		if err := loadModule(filepath.Join(wire.ModulesDir, name)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("loading kernel module %s: %w", file, err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.ENOSYS) {
		var data []byte
		if data, err = os.ReadFile(file); err == nil {
			err = unix.InitModule(data, "")
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading kernel module %s: %w (is it built for this kernel?)", filepath.Base(file), err)
	}
	return nil
}

// findDisks waits for the virtio disks with the given serials to appear
// and returns their device paths by serial.
func findDisks(serials []string, wait time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(wait)
	for {
		found := map[string]string{}
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			s, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			if err != nil {
				continue
			}
			found[string(bytes.TrimSpace(s))] = filepath.Join("/dev", e.Name())
		}
		missing := []string{}
		for _, s := range serials {
			if _, ok := found[s]; !ok {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			// devtmpfs creates the node asynchronously.
			ok := true
			for _, s := range serials {
				if _, err := os.Stat(found[s]); err != nil {
					ok = false
				}
			}
			if ok {
				return found, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("finding disks: no virtio disk with serial %s after %v (are virtio_pci and virtio_blk loaded?)", strings.Join(missing, ", "), wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// swapOn enables the swap device dev.
func swapOn(dev string) error {
	p, err := unix.BytePtrFromString(dev)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return fmt.Errorf("enabling swap on %s: %w", dev, errno)
	}
	return nil
}

// oomKills returns the kernel's count of processes killed for memory.
func oomKills() int64 {
	f, err := os.Open("/proc/vmstat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// killAll kills every process but init and reaps them.
func killAll() {
	_ = unix.Kill(-1, unix.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			return
		}
		if pid <= 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
