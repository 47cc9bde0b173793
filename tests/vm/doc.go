// Package vm holds the end-to-end tests of runAsRoot: nixoci run-as-root in
// a real qemu VM, the resulting image in Docker and umoci, and its faults.
package vm
