package dockerload

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLoadRefusesTooManyLayers loads images of MaxLayers and one more
// layer: the second is refused before the daemon is sent anything, with an
// error naming the image, its layer count and the limit; the containerd
// image store has no such limit.
func TestLoadRefusesTooManyLayers(t *testing.T) {
	tag := mustTag(t, "example.com/deep:v1")
	for _, tc := range []struct {
		name       string
		layers     int
		containerd bool
		refused    bool
	}{
		{"at the limit", MaxLayers, false, false},
		{"one more", MaxLayers + 1, false, true},
		{"a thousand", 1000, false, true},
		{"containerd store", MaxLayers + 1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tars := make([][]byte, tc.layers)
			for i := range tars {
				tars[i] = tarOf(t, file{fmt.Sprintf("l/%d", i), 0o644, []byte{byte(i)}})
			}
			ref := writeLayout(t, t.TempDir(), tars)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d := &fakeDaemon{containerd: tc.containerd}
			_, err := load(ctx, d, ref, tag, Options{})
			if !tc.refused {
				if err != nil {
					t.Fatalf("load() of %d layers = %v", tc.layers, err)
				}
				return
			}
			var tm *TooManyLayersError
			if !errors.As(err, &tm) || !errors.Is(err, ErrTooManyLayers) {
				t.Fatalf("load() of %d layers = %v, want a *TooManyLayersError", tc.layers, err)
			}
			if tm.Layers != tc.layers || tm.Limit != MaxLayers {
				t.Errorf("load() = %+v, want %d layers and limit %d", tm, tc.layers, MaxLayers)
			}
			for _, want := range []string{ref.StringWithinTransport(), fmt.Sprint(tc.layers), fmt.Sprint(MaxLayers), "maxLayers"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("load() = %q, does not say %q", err, want)
				}
			}
			if d.loads != 0 {
				t.Errorf("the daemon was sent %d archives, want none", d.loads)
			}
		})
	}
}
