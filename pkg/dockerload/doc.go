// Package dockerload provides a Docker daemon load that streams an image as a
// docker-archive and leaves out the layers the daemon already has.
package dockerload
