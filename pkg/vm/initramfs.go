package vm

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/nixoci/nixoci/pkg/vm/wire"
)

// writeInitramfs writes the guest's initramfs to w: /init is the nixoci
// binary initBin (with its interpreter and libraries when it is dynamically
// linked), and /modules holds the kernel modules, uncompressed, with a file
// listing them in load order.
func writeInitramfs(w io.Writer, initBin string, modules []Module) error {
	c := newCpio(w)
	c.Dir("dev")
	c.CharDev("dev/console", 0o600, 5, 1)
	c.Dir("proc")
	c.Dir("sys")
	c.Dir("tmp")
	if err := addFile(c, "init", initBin, 0o755); err != nil {
		return err
	}
	libs, err := sharedLibraries(initBin)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := addFile(c, l, l, 0o755); err != nil {
			return err
		}
	}
	c.Dir(wire.ModulesDir)
	var order []string
	for _, m := range modules {
		data, err := openModule(m.File)
		if err != nil {
			return err
		}
		name := m.Name + ".ko"
		c.File(path.Join(wire.ModulesDir, name), 0o644, bytes.NewReader(data), int64(len(data)))
		order = append(order, name)
	}
	list := strings.Join(order, "\n") + "\n"
	c.File(path.Join(wire.ModulesDir, wire.ModulesOrder), 0o644, strings.NewReader(list), int64(len(list)))
	return c.Close()
}

// addFile adds the file src (symlinks followed) at name.
func addFile(c *cpioWriter, name, src string, perm uint32) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("adding %s to the initramfs: %w", src, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("adding %s to the initramfs: %w", src, err)
	}
	c.File(name, perm, f, fi.Size())
	return c.err
}

// sharedLibraries returns the ELF interpreter and shared libraries a
// dynamically linked binary needs (none for a static one), found through
// their RUNPATH/RPATH and the usual library directories.
func sharedLibraries(bin string) ([]string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("reading the guest init %s: %w (it must be a Linux nixoci binary)", bin, err)
	}
	defer f.Close()
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("reading the guest init %s: %w", bin, err)
			}
			interp = strings.TrimRight(string(data), "\x00")
		}
	}
	if interp == "" {
		return nil, nil
	}
	out := []string{interp}
	seen := map[string]bool{interp: true}
	var visit func(file string, f *elf.File) error
	visit = func(file string, f *elf.File) error {
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("reading libraries of %s: %w", file, err)
		}
		dirs := searchDirs(file, f)
		for _, lib := range needed {
			found := ""
			for _, d := range dirs {
				p := filepath.Join(d, lib)
				if _, err := os.Stat(p); err == nil {
					found = p
					break
				}
			}
			if found == "" {
				return fmt.Errorf("the guest init %s is dynamically linked and needs %s, which is not found (searched %s): use a static nixoci (CGO_ENABLED=0) as the guest init", bin, lib, strings.Join(dirs, ":"))
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			lf, err := elf.Open(found)
			if err != nil {
				return fmt.Errorf("reading library %s: %w", found, err)
			}
			err = visit(found, lf)
			lf.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(bin, f); err != nil {
		return nil, err
	}
	return out, nil
}

// searchDirs lists where the libraries of file are looked for.
func searchDirs(file string, f *elf.File) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := f.DynString(tag)
		if err != nil {
			continue
		}
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(file))
				if d != "" {
					dirs = append(dirs, d)
				}
			}
		}
	}
	return append(dirs, "/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib")
}

// isELF tells whether file starts like an ELF binary.
func isELF(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "\x7fELF" {
		return errors.New("not an ELF binary")
	}
	return nil
}
