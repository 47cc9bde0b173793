package nixbuild

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
)

// AttrsFileName is the file Nix writes a derivation's structured attributes
// to, in the build directory.
const AttrsFileName = ".attrs.json"

// Attrs are a derivation's structured attributes (`__structuredAttrs = true`),
// as Nix writes them to .attrs.json: every attribute of the derivation, with
// "outputs" replaced by a map from output name to store path and each
// exportReferencesGraph key holding the path infos of that closure.
type Attrs struct {
	// File is where the attributes were read from.
	File string
	// Log receives the builder's notes and warnings (Nix shows them in the
	// build log). Default: discarded.
	Log  logrus.FieldLogger
	data []byte
	raw  map[string]json.RawMessage
}

// AttrsFile returns the structured attributes file of the running build:
// the first that exists of $NIX_ATTRS_JSON_FILE, .attrs.json in
// $NIX_BUILD_TOP and .attrs.json in the working directory (else the first
// of them, for the error). Nix 2.8 sets NIX_ATTRS_JSON_FILE to the path
// outside the sandbox even in sandboxed builds, where the file is in the
// build directory.
func AttrsFile(getenv func(string) string) string {
	var candidates []string
	if f := getenv("NIX_ATTRS_JSON_FILE"); f != "" {
		candidates = append(candidates, f)
	}
	if top := getenv("NIX_BUILD_TOP"); top != "" {
		candidates = append(candidates, filepath.Join(top, AttrsFileName))
	}
	candidates = append(candidates, AttrsFileName)
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return candidates[0]
}

// LoadAttrs reads the structured attributes from file.
func LoadAttrs(file string) (*Attrs, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading derivation attributes %s: %w (`nixoci nix-build` runs as the builder of a derivation with __structuredAttrs = true; use the nix/ library rather than calling it directly)", file, err)
		}
		return nil, fmt.Errorf("reading derivation attributes %s: %w", file, err)
	}
	return ParseAttrs(file, data)
}

// ParseAttrs parses structured attributes; name is used in error messages.
func ParseAttrs(name string, data []byte) (*Attrs, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parsing derivation attributes %s: %w", name, err)
	}
	return &Attrs{File: name, Log: logs.Discard(), data: data, raw: raw}, nil
}

// Decode decodes the attributes into v, a pointer to a struct whose json
// tags name the attributes it needs; other attributes are ignored.
func (a *Attrs) Decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(a.data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding derivation attributes %s: %w", a.File, err)
	}
	return nil
}

// DecodeOut decodes the attributes into v, as Decode does, and returns the
// path of the "out" output: the start of every builder.
func (a *Attrs) DecodeOut(v any) (string, error) {
	if err := a.Decode(v); err != nil {
		return "", err
	}
	return a.Output("out")
}

// Raw returns the JSON of one attribute and whether it is set (and not null).
func (a *Attrs) Raw(name string) (json.RawMessage, bool) {
	v, ok := a.raw[name]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil, false
	}
	return v, true
}

// Output returns the store path of the named output.
func (a *Attrs) Output(name string) (string, error) {
	var outputs map[string]string
	v, ok := a.raw["outputs"]
	if !ok {
		return "", fmt.Errorf("derivation attributes %s: no \"outputs\"", a.File)
	}
	if err := json.Unmarshal(v, &outputs); err != nil {
		return "", fmt.Errorf("derivation attributes %s: \"outputs\" is not a map of output paths: %w", a.File, err)
	}
	p, ok := outputs[name]
	if !ok || p == "" {
		return "", fmt.Errorf("derivation attributes %s: no output %q", a.File, name)
	}
	return p, nil
}

// HashPart returns the hash part of a store path
// (/nix/store/<hash>-<name> gives <hash>).
func HashPart(storePath string) string {
	base := filepath.Base(storePath)
	if i := strings.IndexByte(base, '-'); i > 0 {
		return base[:i]
	}
	return base
}
