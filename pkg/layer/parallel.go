package layer

import (
	"context"
	"fmt"
	"os"

	"github.com/nixoci/nixoci/internal/parallel"
	"github.com/nixoci/nixoci/pkg/descriptor"
)

// DescribeAll describes every spec on runtime.NumCPU() workers. Results are
// in input order; the first error cancels the rest and is returned.
func DescribeAll(ctx context.Context, specs []Spec) ([]descriptor.Layer, error) {
	out := make([]descriptor.Layer, len(specs))
	err := parallel.Do(ctx, len(specs), func(ctx context.Context, i int) error {
		l, err := Describe(ctx, specs[i])
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		out[i] = l
		return nil
	})
	if err != nil {
		// Leave nothing half-done: tars of the layers that did finish
		// would describe a build that failed.
		for i, l := range out {
			if l.Tar != "" && l.Tar == specs[i].TarFile {
				os.Remove(l.Tar)
			}
		}
		return nil, err
	}
	return out, nil
}
