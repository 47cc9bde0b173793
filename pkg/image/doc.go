// Package image turns layers and a runtime config into an image descriptor, and an image descriptor into its OCI config and manifest.
package image
