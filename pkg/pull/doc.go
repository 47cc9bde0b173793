// Package pull describes pulled base images (containers/image dir: layouts and per-blob manifests) as nixoci image descriptors.
package pull
