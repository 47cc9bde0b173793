package nixbuild

import (
	"context"
	"fmt"

	"github.com/nixoci/nixoci/pkg/image"
)

// indexAttrs are buildImageIndex's attributes (nix/index.nix).
type indexAttrs struct {
	ImageName string  `json:"imageName"`
	ImageTag  *string `json:"imageTag"`
	// Images are image descriptor store paths, one per platform.
	Images []string `json:"images"`
}

// buildIndex writes the index descriptor of the images to $out.
func buildIndex(ctx context.Context, a *Attrs, _ string) error {
	var ia indexAttrs
	out, err := a.DecodeOut(&ia)
	if err != nil {
		return err
	}
	var images []image.IndexImage
	for _, p := range ia.Images {
		img, err := image.Load(ctx, p)
		if err != nil {
			return fmt.Errorf("buildImageIndex images: %w", err)
		}
		images = append(images, image.IndexImage{Path: p, Image: img})
	}
	tag := ""
	if ia.ImageTag != nil {
		tag = *ia.ImageTag
	}
	idx, err := image.AssembleIndex(ia.ImageName, tag, images)
	if err != nil {
		return fmt.Errorf("buildImageIndex: %w", err)
	}
	return image.WriteIndex(out, idx)
}
