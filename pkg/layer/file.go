package layer

import (
	"context"
	"fmt"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// LoadFile reads a layers document (written by WriteFile, `nixoci layers`
// or buildLayer) and returns its layers, in order.
func LoadFile(ctx context.Context, path string) ([]Layer, error) {
	doc, err := descriptor.LoadLayers(path)
	if err != nil {
		return nil, err
	}
	layers, err := LoadAll(ctx, doc.Layers)
	if err != nil {
		return nil, fmt.Errorf("layers descriptor %s: %w", path, err)
	}
	return layers, nil
}

// WriteFile writes a layers document holding layers (atomically; see
// descriptor.Write). Every layer must be a Describer.
func WriteFile(path string, layers []Layer) error {
	ds, err := Descriptors(layers)
	if err != nil {
		return fmt.Errorf("writing layers descriptor %s: %w", path, err)
	}
	if ds == nil {
		ds = []descriptor.Layer{}
	}
	return descriptor.Write(path, &descriptor.Layers{Layers: ds})
}
