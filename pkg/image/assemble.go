package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/layer"
)

// AssembleOptions are the parts of an image: `nixoci image` and the Nix
// library's buildImage read them from files and attributes.
type AssembleOptions struct {
	// Name is the image name for copy scripts; it is lower-cased.
	Name string
	// Tag is the image tag for copy scripts (stored as given).
	Tag string
	// Base is the image this one is built on: its layers come first and
	// its config supplies defaults. Nil: no base.
	Base *Image
	// Layers follow the base image's, in order.
	Layers []layer.Layer
	// Config is the runtime config, merged over the base's (MergeConfig),
	// and the author. Nil: the base's config, or none.
	Config *ParsedConfig
	// Arch, OS and Variant set the platform in Docker/OCI naming. Aliases
	// such as x86_64 or aarch64 are accepted (see NormalizeArch). When empty
	// they come from the base image, else from the running machine
	// (runtime.GOARCH) and "linux".
	Arch, OS, Variant string
	// Created is an RFC 3339 time or "now"; empty means DefaultCreated.
	Created string
	// Now gives the time for Created "now"; nil means time.Now.
	Now func() time.Time
	// Log receives a warning when the platform differs from the base
	// image's. Default: discarded.
	Log logrus.FieldLogger
}

// Assemble builds an image from a base image, layers and a runtime config.
func Assemble(opts AssembleOptions) (*Image, error) {
	name := strings.ToLower(strings.TrimSpace(opts.Name))
	if name == "" {
		return nil, errors.New("assembling image: no name: give the image a name")
	}
	img := &Image{Name: name, Tag: opts.Tag}
	base := opts.Base
	if base != nil {
		img.Layers = append(img.Layers, base.Layers...)
		img.Config = base.Config
	}
	img.Layers = append(img.Layers, opts.Layers...)
	if opts.Config != nil {
		img.Config = MergeConfig(img.Config, opts.Config.Config)
		img.Author = opts.Config.Author
	}
	if err := setPlatform(img, opts, base); err != nil {
		return nil, err
	}
	t, err := ParseCreated(opts.Created, opts.Now)
	if err != nil {
		return nil, err
	}
	img.Created = &t
	if err := check(img); err != nil {
		return nil, fmt.Errorf("assembling image %s: %w", name, err)
	}
	return img, nil
}

func setPlatform(img *Image, opts AssembleOptions, base *Image) error {
	arch, variant := opts.Arch, opts.Variant
	switch {
	case arch != "":
		a, v, err := NormalizeArch(arch)
		if err != nil {
			return err
		}
		arch = a
		if variant == "" {
			variant = v
		}
	case base != nil:
		arch = base.Architecture
		if variant == "" {
			variant = base.Variant
		}
	default:
		arch, variant = HostArch()
		if opts.Variant != "" {
			variant = opts.Variant
		}
	}
	osName := opts.OS
	if osName == "" && base != nil {
		osName = base.OS
	}
	if osName == "" {
		osName = "linux"
	}
	if base != nil && (base.Architecture != arch || base.OS != osName) {
		logs.Or(opts.Log).Warnf("image %s is %s/%s but its base image %s is %s/%s", img.Name, osName, arch, base.Name, base.OS, base.Architecture)
	}
	img.Architecture, img.OS, img.Variant = arch, osName, variant
	return nil
}

// ParseCreated parses an RFC 3339 time or "now" (from now, or time.Now when
// now is nil), in UTC; empty gives DefaultCreated.
func ParseCreated(s string, now func() time.Time) (time.Time, error) {
	switch s {
	case "":
		return DefaultCreated(), nil
	case "now":
		if now == nil {
			now = time.Now
		}
		return now().UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("created time %q: give an RFC 3339 time such as 1970-01-01T00:00:01Z, or \"now\"", s)
	}
	return t.UTC(), nil
}

// archAlias maps names used by Nix, uname and others to OCI architecture
// and variant; ok is false for an unknown name.
func archAlias(name string) (arch, variant string, ok bool) {
	switch name {
	case "amd64", "x86_64", "x86-64":
		return "amd64", "", true
	case "arm64", "aarch64":
		return "arm64", "", true
	case "386", "i386", "i486", "i586", "i686":
		return "386", "", true
	case "arm", "armv7l", "armhf":
		return "arm", "v7", true
	case "armv6l", "armel":
		return "arm", "v6", true
	case "armv5l", "armv5tel":
		return "arm", "v5", true
	case "ppc64le", "powerpc64le":
		return "ppc64le", "", true
	case "s390x", "riscv64", "wasm":
		return name, "", true
	case "mips64le", "mips64el":
		return "mips64le", "", true
	case "loong64", "loongarch64":
		return "loong64", "", true
	}
	return "", "", false
}

// NormalizeArch maps an architecture name (OCI, Go, Nix or uname style) to
// the OCI architecture and its default variant ("v7" for plain "arm").
// Unknown names are an error listing the accepted ones.
func NormalizeArch(name string) (arch, variant string, err error) {
	if a, v, ok := archAlias(strings.ToLower(name)); ok {
		return a, v, nil
	}
	return "", "", fmt.Errorf("architecture %q: unknown; use an OCI name: amd64, arm64, arm, 386, ppc64le, s390x, riscv64, mips64le, loong64 (x86_64, aarch64, i686, armv7l, armv6l and powerpc64le are also accepted)", name)
}

// HostArch returns the running machine's architecture in OCI naming, with
// the variant for arm (from the binary's GOARM setting, default v7).
func HostArch() (arch, variant string) {
	arch = runtime.GOARCH
	if arch != "arm" {
		return arch, ""
	}
	variant = "v7"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" && s.Value != "" {
				variant = "v" + strings.SplitN(s.Value, ",", 2)[0]
			}
		}
	}
	return arch, variant
}

// ParsedConfig is what a config file gives: the runtime config and, when
// the file is a whole image config, its author.
type ParsedConfig struct {
	Config ocispec.ImageConfig
	Author string
	// Ignored lists the keys that are not OCI image config fields (Docker's
	// Healthcheck, Shell, …), sorted: they are left out, and callers
	// should say so.
	Ignored []string
}

// configKeys returns the JSON keys of ocispec.ImageConfig.
func configKeys() []string {
	return []string{"User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal", "ArgsEscaped"}
}

// ParseConfig parses a config file. Two shapes are accepted:
//   - an OCI ImageConfig object: {"Env": […], "Cmd": […], "Entrypoint": […],
//     "User": …, "WorkingDir": …, "ExposedPorts": {…}, "Volumes": {…},
//     "Labels": {…}, "StopSignal": …};
//   - a whole OCI (or Docker) image config, recognised by its "config"
//     key: only "config" and "author" are used; platform, rootfs and
//     history are ignored (they come from the flags and layers).
//
// Keys that are not OCI ImageConfig fields (Docker's Healthcheck, Shell, …)
// are dropped and listed in Ignored; a key differing only in case from an OCI field
// is an error, as is JSON that is not an object. name is used in messages.
func ParseConfig(name string, data []byte) (*ParsedConfig, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("parsing image config %s: %w (expected a JSON object such as {\"Cmd\": [\"/bin/sh\"]})", name, err)
	}
	pc := &ParsedConfig{}
	raw := data
	if inner, ok := top["config"]; ok {
		if a, ok := top["author"]; ok {
			if err := json.Unmarshal(a, &pc.Author); err != nil {
				return nil, fmt.Errorf("parsing image config %s: author: %w", name, err)
			}
		}
		raw = inner
		top = nil
		if err := json.Unmarshal(inner, &top); err != nil {
			return nil, fmt.Errorf("parsing image config %s: \"config\": %w", name, err)
		}
	}
	var unknown []string
	for k := range top {
		if slices.Contains(configKeys(), k) {
			continue
		}
		for _, ck := range configKeys() {
			if strings.EqualFold(k, ck) {
				return nil, fmt.Errorf("image config %s: key %q: write it %q (OCI config keys are case-sensitive)", name, k, ck)
			}
		}
		unknown = append(unknown, k)
	}
	sort.Strings(unknown)
	pc.Ignored = unknown
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return pc, nil
	}
	if err := json.Unmarshal(raw, &pc.Config); err != nil {
		return nil, fmt.Errorf("parsing image config %s: %w", name, err)
	}
	return pc, nil
}

// MergeConfig returns base with over applied, the way Docker applies a
// child image's settings to its parent's: every field set in over replaces
// base's; Env is merged by variable name (over's value wins, base's order
// kept, new names appended); Labels, ExposedPorts and Volumes are merged by
// key (over wins). Setting Entrypoint without Cmd clears the base's Cmd,
// since a base Cmd is meant as arguments to the base Entrypoint.
func MergeConfig(base, over ocispec.ImageConfig) ocispec.ImageConfig {
	out := base
	if over.User != "" {
		out.User = over.User
	}
	if over.WorkingDir != "" {
		out.WorkingDir = over.WorkingDir
	}
	if over.StopSignal != "" {
		out.StopSignal = over.StopSignal
	}
	if over.Entrypoint != nil {
		out.Entrypoint = over.Entrypoint
		if over.Cmd == nil {
			out.Cmd = nil
		}
	}
	if over.Cmd != nil {
		out.Cmd = over.Cmd
	}
	out.Env = mergeEnv(base.Env, over.Env)
	out.Labels = mergeMap(base.Labels, over.Labels)
	out.ExposedPorts = mergeMap(base.ExposedPorts, over.ExposedPorts)
	out.Volumes = mergeMap(base.Volumes, over.Volumes)
	return out
}

func mergeEnv(base, over []string) []string {
	if len(over) == 0 {
		return base
	}
	key := func(kv string) string { return strings.SplitN(kv, "=", 2)[0] }
	out := make([]string, 0, len(base)+len(over))
	index := map[string]int{}
	for _, kv := range append(append([]string(nil), base...), over...) {
		if i, ok := index[key(kv)]; ok {
			out[i] = kv
			continue
		}
		index[key(kv)] = len(out)
		out = append(out, kv)
	}
	return out
}

func mergeMap[V any](base, over map[string]V) map[string]V {
	if len(over) == 0 {
		return base
	}
	out := make(map[string]V, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}
