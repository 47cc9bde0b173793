package nixbuild

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
)

// builders are the derivation kinds, by the name the Nix library passes
// as `nixoci nix-build <kind>`.
func builders() map[string]func(ctx context.Context, a *Attrs, tmp string) error {
	return map[string]func(ctx context.Context, a *Attrs, tmp string) error{
		"layers":              buildLayers,
		"image":               buildImage,
		"index":               buildIndex,
		"write-script":        func(_ context.Context, a *Attrs, _ string) error { return writeScript(a) },
		"pull":                pullToDir,
		"image-from-dir":      imageFromDir,
		"fetch-blob":          fetchBlob,
		"image-from-manifest": imageFromManifest,
		"run-as-root":         runAsRoot,
		"save":                saveArchive,
		"export":              exportImage,
		"write-executable":    func(_ context.Context, a *Attrs, _ string) error { return writeExecutable(a) },
		"customise":           customise,
	}
}

// Kinds returns the derivation kinds Run knows, sorted.
func Kinds() []string {
	var out []string
	for k := range builders() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Run builds the derivation of the given kind whose structured attributes
// are in attrsFile, writing its outputs; tmp is scratch space, and log
// (nil: discarded) receives notes for the build log.
func Run(ctx context.Context, kind, attrsFile, tmp string, log logrus.FieldLogger) error {
	build, ok := builders()[kind]
	if !ok {
		return fmt.Errorf("unknown derivation kind %q: expected one of %s (is the nix/ library from the same nixoci version?)", kind, strings.Join(Kinds(), ", "))
	}
	a, err := LoadAttrs(attrsFile)
	if err != nil {
		return err
	}
	a.Log = logs.Or(log)
	if tmp == "" {
		tmp = os.TempDir()
	}
	if err := build(ctx, a, tmp); err != nil {
		return fmt.Errorf("nix-build %s: %w", kind, err)
	}
	return nil
}
