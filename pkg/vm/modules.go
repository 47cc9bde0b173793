package vm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// GuestModules are the kernel modules the guest needs: the virtio PCI
// transport and block driver for its disks, and overlayfs for the image's
// root. Those the kernel has built in are skipped.
var GuestModules = []string{"virtio_pci", "virtio_blk", "overlay"}

// ErrModuleNotFound is wrapped by the error for a module that is neither
// in modules.dep nor built into the kernel.
var ErrModuleNotFound = errors.New("kernel module not found")

// Module is a loadable kernel module file.
type Module struct {
	// Name is the module name ("virtio_blk").
	Name string
	// File is the module's path (possibly compressed: .ko.xz, .ko.gz, .ko.zst).
	File string
}

// ResolveModules returns the module files to load, dependencies first, for
// the named modules of the kernel whose module directory (holding
// modules.dep) is dir. Modules listed in modules.builtin are left out.
func ResolveModules(dir string, names []string) ([]Module, error) {
	depFile := filepath.Join(dir, "modules.dep")
	deps, err := readModulesDep(depFile)
	if err != nil {
		return nil, err
	}
	builtin, err := readModulesBuiltin(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	var out []Module
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		if builtin[name] {
			return nil
		}
		rel, ok := deps.files[name]
		if !ok {
			by := ""
			if len(chain) > 0 {
				by = " (needed by " + strings.Join(chain, " → ") + ")"
			}
			return fmt.Errorf("kernel module %s%s is neither in %s nor built into the kernel (modules.builtin): pass the module directory of the kernel you boot (vmModules, --modules): %w",
				name, by, depFile, ErrModuleNotFound)
		}
		for _, d := range deps.deps[name] {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		file := rel
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, rel)
		}
		if _, err := os.Stat(file); err != nil {
			return fmt.Errorf("kernel module %s is listed in %s but its file is missing: %w: %w", name, depFile, err, ErrModuleNotFound)
		}
		out = append(out, Module{Name: name, File: file})
		return nil
	}
	for _, n := range names {
		if err := visit(moduleName(n), nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type modulesDep struct {
	files map[string]string   // module name → path as written in modules.dep
	deps  map[string][]string // module name → names it depends on
}

func readModulesDep(file string) (*modulesDep, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading kernel module list: %w (is the module directory, vmModules or --modules, the one holding modules.dep?)", err)
	}
	defer f.Close()
	md := &modulesDep{files: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name := moduleName(mod)
		md.files[name] = mod
		for _, d := range strings.Fields(rest) {
			md.deps[name] = append(md.deps[name], moduleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return md, nil
}

func readModulesBuiltin(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading built-in module list: %w", err)
	}
	out := map[string]bool{}
	for _, l := range strings.Fields(string(data)) {
		out[moduleName(l)] = true
	}
	return out, nil
}

// moduleName turns a module path or name into the kernel's module name:
// base name without .ko (and compression suffix), '-' as '_'.
func moduleName(s string) string {
	base := filepath.Base(s)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// openModule returns the uncompressed content of a module file.
func openModule(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading kernel module: %w", err)
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	switch {
	case strings.HasSuffix(file, ".xz"):
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("decompressing kernel module %s: %w", file, err)
		}
		r = xr
	case strings.HasSuffix(file, ".gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("decompressing kernel module %s: %w", file, err)
		}
		defer gr.Close()
		r = gr
	case strings.HasSuffix(file, ".zst"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("decompressing kernel module %s: %w", file, err)
		}
		defer zr.Close()
		r = zr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompressing kernel module %s: %w", file, err)
	}
	if !bytes.HasPrefix(data, []byte("\x7fELF")) {
		return nil, fmt.Errorf("kernel module %s is not an ELF file", file)
	}
	return data, nil
}
