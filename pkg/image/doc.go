// Package image provides images as values (a platform, a runtime config and
// layers), assembled from a base image, layers and a config, the OCI
// config and manifest they are served with, and indexes of images per
// platform.
package image
