package nixbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixoci/nixoci/pkg/image"
	"github.com/nixoci/nixoci/pkg/vm"
)

// runAsRootAttrs are the structured attributes nix/run-as-root.nix sets.
type runAsRootAttrs struct {
	Image             string   `json:"image"`
	Layers            []string `json:"layers"`
	Script            string   `json:"script"`
	Shell             string   `json:"shell"`
	VMKernel          string   `json:"vmKernel"`
	VMModules         string   `json:"vmModules"`
	Qemu              string   `json:"qemu"`
	GuestInit         string   `json:"guestInit"`
	DiskSize          int64    `json:"diskSize"`
	BuildVMMemorySize int64    `json:"buildVMMemorySize"`
	RunAsRootTimeout  int64    `json:"runAsRootTimeout"`
	Created           string   `json:"created"`
	Compression       string   `json:"compression"`
	Accel             string   `json:"accel"`
	// ScriptClosure is Nix's exportReferencesGraph of the script's store paths.
	ScriptClosure []struct {
		Path string `json:"path"`
	} `json:"scriptClosure"`
}

// runAsRoot runs the derivation's runAsRoot script in a VM over the image
// (pkg/vm) and writes the layer of its changes to $out, as
// `nixoci run-as-root -o $out` does.
func runAsRoot(ctx context.Context, a *Attrs, tmp string) error {
	var ra runAsRootAttrs
	out, err := a.DecodeOut(&ra)
	if err != nil {
		return err
	}
	if strings.TrimSpace(ra.Script) == "" {
		return errors.New("runAsRoot is empty: give the script text")
	}
	if ra.RunAsRootTimeout < 0 {
		return errors.New("runAsRootTimeout must be a positive number of seconds")
	}
	// "now" (or nothing) leaves the layer's times to the image's created
	// time, which was already fixed when the image was built.
	var created *time.Time
	if ra.Created != "" && ra.Created != "now" {
		t, err := image.ParseCreated(ra.Created, nil)
		if err != nil {
			return err
		}
		created = &t
	}
	script := filepath.Join(tmp, "run-as-root.sh")
	if err := os.WriteFile(script, []byte(ra.Script), 0o644); err != nil {
		return fmt.Errorf("writing runAsRoot script: %w", err)
	}
	o := vm.Options{
		Image:       ra.Image,
		Layers:      ra.Layers,
		Script:      script,
		Shell:       ra.Shell,
		Kernel:      ra.VMKernel,
		Modules:     ra.VMModules,
		Qemu:        ra.Qemu,
		Init:        ra.GuestInit,
		DiskSizeMiB: ra.DiskSize,
		MemoryMiB:   ra.BuildVMMemorySize,
		Timeout:     time.Duration(ra.RunAsRootTimeout) * time.Second,
		Created:     created,
		Compression: ra.Compression,
		Accel:       ra.Accel,
		Output:      out,
		TempDir:     tmp,
		// The builder's logger (pkg/commands hands it the standard one):
		// its warnings (the KVM fallback, /nix/store writes) go to the
		// build log, and --debug adds the VM console.
		Log: a.Log,
	}
	for _, p := range ra.ScriptClosure {
		o.StorePaths = append(o.StorePaths, p.Path)
	}
	if err := o.Validate(); err != nil {
		return err
	}
	res, err := vm.Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "runAsRoot: %s\n", res.Summary())
	return nil
}
