package nixbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// scriptAttrs are writeScript's attributes (nix/scripts.nix).
type scriptAttrs struct {
	ScriptName string `json:"scriptName"`
	Text       string `json:"text"`
}

// writeScript writes $out/bin/<scriptName>, executable.
func writeScript(a *Attrs) error {
	var sa scriptAttrs
	if err := a.Decode(&sa); err != nil {
		return err
	}
	if sa.ScriptName == "" || strings.ContainsAny(sa.ScriptName, "/\x00") || sa.ScriptName == "." || sa.ScriptName == ".." {
		return fmt.Errorf("write-script: script name %q: give a file name without slashes", sa.ScriptName)
	}
	out, err := a.Output("out")
	if err != nil {
		return err
	}
	bin := filepath.Join(out, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("writing script: %w", err)
	}
	file := filepath.Join(bin, sa.ScriptName)
	if err := os.WriteFile(file, []byte(sa.Text), 0o555); err != nil {
		return fmt.Errorf("writing script %s: %w", file, err)
	}
	return nil
}
