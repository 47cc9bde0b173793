package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BuildTags are the tags every nixoci build uses.
const BuildTags = "containers_image_openpgp exclude_graphdriver_btrfs"

// buildTimeout bounds one `go build` of nixoci.
const buildTimeout = 10 * time.Minute

// ModuleRoot is the repository root (tests/testenv is two levels down).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildNixoci builds ./cmd/nixoci of this tree into out with BuildTags,
// with cgo on or off (off gives a static binary), within ten minutes.
// flags are more `go build` flags, such as -ldflags.
func BuildNixoci(out string, cgo bool, flags ...string) error {
	cgoEnv := "CGO_ENABLED=0"
	if cgo {
		cgoEnv = "CGO_ENABLED=1"
	}
	args := append([]string{"build", "-tags", BuildTags}, flags...)
	args = append(args, "-o", out, "./cmd/nixoci")
	r := Cmd{Name: "go", Args: args, Dir: ModuleRoot(), Env: []string{cgoEnv}, Timeout: buildTimeout}.Run(context.Background())
	if r.Err != nil {
		return fmt.Errorf("building nixoci (%s): %w\n%s%s", cgoEnv, r.Err, r.Stdout, r.Stderr)
	}
	return nil
}

// OnceBuild builds nixoci at most once per test process, into a temporary
// directory that RunTests (or Remove) deletes.
type OnceBuild struct {
	// Env names an environment variable that, when set, gives a prebuilt
	// binary to test instead.
	Env string
	// CGO builds with cgo on; off gives a static binary.
	CGO bool
	// Flags are more `go build` flags.
	Flags []string

	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the binary, building it on the first call. A failed build
// fails this and every later test that asks.
func (b *OnceBuild) Path(t testing.TB) string {
	t.Helper()
	if b.Env != "" {
		if p := os.Getenv(b.Env); p != "" {
			return p
		}
	}
	RequireTools(t, "go")
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "nixoci-test-bin-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "bin", "nixoci")
		b.err = BuildNixoci(b.path, b.CGO, b.Flags...)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// RunTests runs the tests of m, deletes the built binary and returns the
// exit code, for TestMain: os.Exit(b.RunTests(m)).
func (b *OnceBuild) RunTests(m *testing.M) int {
	defer b.Remove()
	return m.Run()
}

// Remove deletes the built binary, if any.
func (b *OnceBuild) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
