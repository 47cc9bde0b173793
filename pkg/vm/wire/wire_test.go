package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHeaderRoundTrip(t *testing.T) {
	job := Job{
		Layers:  []Section{{Offset: HeaderSize, Length: 10240}, {Offset: HeaderSize + 12288, Length: 512}},
		Closure: &Section{Offset: 3 * HeaderSize, Length: 1024},
		Script:  Section{Offset: 4 * HeaderSize, Length: 7},
		Env:     []string{"HOME=/root", "PATH=/bin"},
		Created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		Modules: []string{"virtio_blk"},
	}
	block, err := EncodeHeader(MagicInput, &job)
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 2*HeaderSize)
	copy(disk, block)
	var got Job
	if _, err := ReadHeader(bytes.NewReader(disk), MagicInput, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(job, got); diff != "" {
		t.Errorf("ReadHeader() (-want +got):\n%s", diff)
	}
	var res Result
	magic, err := ReadHeader(bytes.NewReader(disk), MagicOutput, &res)
	if !errors.Is(err, ErrNoHeader) || magic != MagicInput {
		t.Errorf("ReadHeader(wrong magic) = %q, %v, want %q, ErrNoHeader", magic, err, MagicInput)
	}
	empty := append([]byte(MagicEmpty), make([]byte, 100)...)
	if _, err := ReadHeader(bytes.NewReader(empty), MagicOutput, &res); !errors.Is(err, ErrNoHeader) {
		t.Errorf("ReadHeader(empty output disk) = %v, want ErrNoHeader", err)
	}
	if _, err := EncodeHeader(MagicOutput, Result{Error: strings.Repeat("x", HeaderSize)}); err == nil {
		t.Errorf("EncodeHeader(too large) succeeded")
	}
}

func TestAlignUp(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{{0, 0}, {1, Align}, {Align, Align}, {Align + 1, 2 * Align}} {
		if got := AlignUp(tc.in); got != tc.want {
			t.Errorf("AlignUp(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
