// Package e2e provides end-to-end tests that build the nixoci binary and run
// it against real destinations (registry, dockerd, containers-storage, OCI
// layouts) on 127.0.0.1, the way a user would.
package e2e
