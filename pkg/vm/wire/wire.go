package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Disk serials: each raw disk is attached with one of these as its virtio
// serial, which the guest reads from /sys/block/vdX/serial.
const (
	SerialInput  = "nixoci-input"
	SerialOutput = "nixoci-output"
	SerialSwap   = "nixoci-swap"
)

// ModulesDir is where the initramfs holds the kernel modules the guest
// loads, with ModulesOrder, a file in it, listing their file names in load
// order, one a line.
const (
	ModulesDir   = "/modules"
	ModulesOrder = "order"
)

// BootMarker is what the guest init prints on the serial console first
// thing, before it does anything else. It tells the host that the kernel
// booted and ran the init, so that a VM stuck in boot (a KVM that opens but
// cannot run a guest) is told apart from a slow script. The kernel never
// prints it: it is not on the kernel command line.
const BootMarker = "nixoci-guest: init is up"

// GuestEnv is the variable the kernel command line sets (as NAME=1) to tell
// the nixoci binary that it runs as the VM's init.
const GuestEnv = "NIXOCI_GUEST"

// Header block layout: 8 bytes of magic, a little-endian uint32 length, then
// that many bytes of JSON. The block is at offset 0 and at most HeaderSize long.
const (
	MagicInput  = "NXOCIIN1"
	MagicOutput = "NXOCIOU1"
	// MagicEmpty marks an output disk the guest has not written a result to.
	MagicEmpty = "NXOCIEMP"
	// HeaderSize is the space reserved for the header block; sections start
	// at or after it.
	HeaderSize = 1 << 20
	// Align is the alignment of every section.
	Align = 4096
)

// Section is a byte range of a disk.
type Section struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// Reader returns the section of r.
func (s Section) Reader(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, s.Offset, s.Length)
}

// Job is the input disk's header: what the guest is asked to do.
type Job struct {
	// Layers are the image's layer tars (uncompressed), base first.
	Layers []Section `json:"layers"`
	// Closure is a tar of the store paths the script needs, with entries
	// named nix/store/….
	Closure *Section `json:"closure,omitempty"`
	// Script is the script's text.
	Script Section `json:"script"`
	// Shell runs the script when it has no #! line; empty means the image's
	// /bin/sh.
	Shell string `json:"shell,omitempty"`
	// Env is the script's environment (NAME=value), HOME and PATH included.
	Env []string `json:"env"`
	// Created is the time every entry of the changes layer gets.
	Created time.Time `json:"created"`
	// LowerMiB sizes the tmpfs that holds the image's files; UpperMiB is the
	// scratch space the script's changes may use (diskSize).
	LowerMiB int64 `json:"lowerMiB"`
	UpperMiB int64 `json:"upperMiB"`
	// MemoryMiB is the VM's memory, named in out-of-memory errors.
	MemoryMiB int64 `json:"memoryMiB"`
	// OutputSize is the output disk's size in bytes.
	OutputSize int64 `json:"outputSize"`
	// Modules are the files under /modules in the initramfs, in load order.
	Modules []string `json:"modules"`
}

// Status values of a Result.
const (
	// StatusOK: the script succeeded and Tar holds the changes.
	StatusOK = "ok"
	// StatusScriptFailed: the script exited non-zero or was killed.
	StatusScriptFailed = "script-failed"
	// StatusError: the guest could not do its part; Error says why.
	StatusError = "error"
)

// Result is the output disk's header: what happened in the guest.
type Result struct {
	Status string `json:"status"`
	// Error describes a guest failure (StatusError).
	Error string `json:"error,omitempty"`
	// ExitCode is the script's exit status; Signal names the signal that
	// killed it, if any.
	ExitCode int    `json:"exitCode"`
	Signal   string `json:"signal,omitempty"`
	// DiskFull is set when the scratch space (diskSize) was full after the
	// script ran; OutOfMemory when the kernel killed a process for memory.
	DiskFull    bool `json:"diskFull,omitempty"`
	OutOfMemory bool `json:"outOfMemory,omitempty"`
	// Tar is the changes layer; Log is the script's output (its tail when
	// LogTruncated).
	Tar          Section `json:"tar"`
	Log          Section `json:"log"`
	LogTruncated bool    `json:"logTruncated,omitempty"`
	// StoreWrites lists paths under /nix/store the script changed, which
	// are not in the layer (at most MaxStoreWrites; StoreWritesTotal counts all).
	StoreWrites      []string `json:"storeWrites,omitempty"`
	StoreWritesTotal int      `json:"storeWritesTotal,omitempty"`
	// Entries counts the changes tar's entries.
	Entries int `json:"entries"`
	// Timings are guest-side durations in milliseconds, by step.
	Timings map[string]int64 `json:"timings,omitempty"`
}

// MaxStoreWrites caps Result.StoreWrites.
const MaxStoreWrites = 50

// ErrNoHeader is returned by ReadHeader when the block does not start with
// the expected magic.
var ErrNoHeader = errors.New("no header")

// EncodeHeader returns the header block for v with the given magic.
func EncodeHeader(magic string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding disk header: %w", err)
	}
	if 12+len(data) > HeaderSize {
		return nil, fmt.Errorf("encoding disk header: %d bytes of JSON do not fit in %d", len(data), HeaderSize-12)
	}
	buf := make([]byte, 12, 12+len(data))
	copy(buf, magic)
	binary.LittleEndian.PutUint32(buf[8:], uint32(len(data)))
	return append(buf, data...), nil
}

// ReadHeader reads the header block at offset 0 of r into v. It returns the
// magic found; ErrNoHeader when it is not want.
func ReadHeader(r io.ReaderAt, want string, v any) (string, error) {
	var head [12]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return "", fmt.Errorf("reading disk header: %w", err)
	}
	magic := string(head[:8])
	if magic != want {
		return magic, ErrNoHeader
	}
	n := binary.LittleEndian.Uint32(head[8:])
	if n > HeaderSize-12 {
		return magic, fmt.Errorf("reading disk header: length %d is too large", n)
	}
	data := make([]byte, n)
	if _, err := r.ReadAt(data, 12); err != nil {
		return magic, fmt.Errorf("reading disk header: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return magic, fmt.Errorf("decoding disk header: %w", err)
	}
	return magic, nil
}

// AlignUp rounds n up to a multiple of Align.
func AlignUp(n int64) int64 {
	return (n + Align - 1) / Align * Align
}
