package vm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/layer"
	"github.com/nixoci/nixoci/pkg/tarstream"
	"github.com/nixoci/nixoci/pkg/vm/wire"
)

const mib = 1 << 20

// inputWriter appends aligned sections to the input disk file.
type inputWriter struct {
	f   *os.File
	off int64
}

// section copies what write writes into the next aligned section.
func (w *inputWriter) section(write func(io.Writer) error) (wire.Section, error) {
	start := wire.AlignUp(w.off)
	cw := &countWriter{w: io.NewOffsetWriter(w.f, start)}
	if err := write(cw); err != nil {
		return wire.Section{}, err
	}
	w.off = start + cw.n
	return wire.Section{Offset: start, Length: cw.n}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeInput writes the input disk: each layer's uncompressed tar, the
// closure tar, the script, and the job header in front. It fills the
// job's sections and returns the number of bytes of files the guest unpacks.
func writeInput(ctx context.Context, file string, layers []layer.Layer, storePaths []string, script []byte, job *wire.Job) (int64, error) {
	f, err := os.Create(file)
	if err != nil {
		return 0, fmt.Errorf("creating input disk: %w", err)
	}
	defer f.Close()
	w := &inputWriter{f: f, off: wire.HeaderSize}
	var unpacked int64
	for i, l := range layers {
		s, err := w.section(func(out io.Writer) error {
			r, err := l.Uncompressed(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(out, r)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("writing image layer %d (%s) to the input disk: %w", i+1, l.DiffID(), err)
		}
		job.Layers = append(job.Layers, s)
		unpacked += s.Length
	}
	if len(storePaths) > 0 {
		paths := make([]descriptor.Path, len(storePaths))
		for i, p := range storePaths {
			paths[i] = descriptor.Path{Path: p}
		}
		s, err := w.section(func(out io.Writer) error {
			_, err := tarstream.Write(ctx, out, paths, tarstream.WithoutShares())
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("writing the script's closure to the input disk: %w", err)
		}
		job.Closure = &s
		unpacked += s.Length
	}
	s, err := w.section(func(out io.Writer) error {
		_, err := out.Write(script)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("writing the script to the input disk: %w", err)
	}
	job.Script = s
	// Round the disk up to whole sectors.
	if err := f.Truncate(wire.AlignUp(w.off)); err != nil {
		return 0, fmt.Errorf("writing input disk: %w", err)
	}
	return unpacked, nil
}

// writeInputHeader writes the job header at the start of the input disk.
func writeInputHeader(file string, job *wire.Job) error {
	block, err := wire.EncodeHeader(wire.MagicInput, job)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing input disk header: %w", err)
	}
	if _, err := f.WriteAt(block, 0); err != nil {
		f.Close()
		return fmt.Errorf("writing input disk header: %w", err)
	}
	return f.Close()
}

// createSparse creates a sparse file of size bytes starting with head.
func createSparse(file string, size int64, head []byte) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("creating disk %s: %w", file, err)
	}
	if _, err := f.Write(head); err != nil {
		f.Close()
		return fmt.Errorf("creating disk %s: %w", file, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("creating disk %s: %w", file, err)
	}
	return f.Close()
}

// swapHeader returns the first page of a Linux swap area (what mkswap
// writes) for a device of size bytes.
func swapHeader(size int64) []byte {
	const page = 4096
	h := make([]byte, page)
	binary.LittleEndian.PutUint32(h[1024:], 1)                   // version
	binary.LittleEndian.PutUint32(h[1028:], uint32(size/page-1)) // last_page
	copy(h[page-10:], "SWAPSPACE2")
	return h
}

// closurePaths reads Nix exportReferencesGraph files (a JSON list of
// objects with a "path") and returns every path in them and in extra,
// sorted, each once.
func closurePaths(graphs []string, extra []string) ([]string, error) {
	set := map[string]bool{}
	for _, p := range extra {
		set[p] = true
	}
	for _, g := range graphs {
		data, err := os.ReadFile(g)
		if err != nil {
			return nil, fmt.Errorf("reading closure graph: %w", err)
		}
		var entries []struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			return nil, fmt.Errorf("parsing closure graph %s: %w (expected Nix's exportReferencesGraph JSON, a list of {\"path\": ...})", g, err)
		}
		for _, e := range entries {
			if e.Path != "" {
				set[e.Path] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}
