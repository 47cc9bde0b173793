package atomic

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out")
	if err := WriteFile(file, 0o640, func(w io.Writer) error {
		_, err := io.WriteString(w, "hello")
		return err
	}); err != nil {
		t.Fatalf("WriteFile() = %v", err)
	}
	data, err := os.ReadFile(file)
	if err != nil || string(data) != "hello" {
		t.Fatalf("ReadFile() = %q, %v; want hello", data, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	boom := errors.New("boom")
	err = WriteFile(file, 0o640, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFile() = %v, want %v", err, boom)
	}
	if data, _ := os.ReadFile(file); string(data) != "hello" {
		t.Errorf("a failed WriteFile changed the file to %q", data)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("a failed WriteFile left %v", left)
	}
}
