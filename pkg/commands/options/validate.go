package options

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/transport/nix"
)

// NixPrefix is the transport prefix of image descriptors on the command line.
const NixPrefix = "nix:"

// checkOutput checks that an -o file can be written: it is named and its
// directory exists.
func checkOutput(flag, path string) error {
	if path == "" {
		return fmt.Errorf("missing %s FILE: name the descriptor file to write", flag)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output %s: directory %s: %w (create it first)", path, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("output %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("output %s is a directory: name a file", path)
	}
	return nil
}

// checkFile checks that an input file given to flag exists and is a regular
// file (or a symlink to one). An empty path is an unset flag.
func checkFile(flag, path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s %s is a directory: give a file", flag, path)
	}
	return nil
}

// checkStorePath checks that a store path given on the command line exists.
func checkStorePath(what, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s %s: not an absolute path: give the full store path (/nix/store/…)", what, path)
	}
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s does not exist: build or realise it first (nix-store --realise), it may have been garbage-collected", what, path)
		}
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	return nil
}

// checkOneOf checks that value is one of allowed.
func checkOneOf(flag, value string, allowed []string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q is not supported: use one of %s", flag, value, strings.Join(allowed, ", "))
}

// DescriptorPath returns the file path of a `nix:PATH` argument, parsed as
// the nix: transport parses it (so `nix:PATH:uncompressed` names PATH); a
// bare path is accepted too. Any other transport is an error that says so.
func DescriptorPath(arg string) (string, error) {
	if arg == "" {
		return "", errors.New("missing image: give nix:IMAGE.json")
	}
	rest, isNix := strings.CutPrefix(arg, NixPrefix)
	if !isNix {
		if i := strings.Index(arg, ":"); i > 0 && !strings.ContainsAny(arg[:i], "/.") {
			if _, err := os.Stat(arg); err != nil {
				return "", fmt.Errorf("image %s: only nix:IMAGE.json descriptors are read here, not the %q transport (use `skopeo inspect` for other images)", arg, arg[:i])
			}
		}
		return arg, nil
	}
	ref, err := nix.ParseReference(rest)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", arg, err)
	}
	path, _ := nix.DescriptorPath(ref)
	return path, nil
}

// decodeFile decodes a JSON file strictly (unknown fields are errors) into v.
func decodeFile(flag, path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", flag, path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("parsing %s %s: %w", flag, path, err)
	}
	return nil
}

// checkDir checks that a directory given to flag exists.
func checkDir(flag, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w (create the directory first)", flag, path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory", flag, path)
	}
	return nil
}

// checkDescriptor checks that an image descriptor (a file, or a directory
// holding image.json) exists.
func checkDescriptor(path string) error {
	file, err := descriptor.ResolvePath(path)
	if err != nil {
		return err
	}
	return checkFile("image descriptor", file)
}
