package testenv

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// WriteFile writes content to path with mode, making its directories first.
func WriteFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// ReadFile returns the content of path.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// CopyFile copies src to dst with mode, making dst's directories first.
func CopyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	WriteFile(t, dst, string(ReadFile(t, src)), mode)
}

// StaticBusybox returns Debian's statically linked busybox (package
// busybox-static), which runs in an empty image or VM, and calls Missing
// when there is none: the one on PATH, /bin/busybox or /usr/bin/busybox.
func StaticBusybox(t testing.TB) string {
	t.Helper()
	candidates := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		if isStatic(p) {
			return p
		}
	}
	Missing(t, "a static busybox is not installed (Debian package busybox-static)")
	return ""
}

// isStatic reports whether path is an ELF executable with no program
// interpreter (a dynamic loader).
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// TarEntry is one entry of a tar file, read back.
type TarEntry struct {
	Header *tar.Header
	Body   string
}

// ReadTar returns every entry of the uncompressed tar file, in order.
func ReadTar(t testing.TB, file string) []TarEntry {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []TarEntry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s in %s: %v", h.Name, file, err)
		}
		entries = append(entries, TarEntry{Header: h, Body: string(body)})
	}
}
