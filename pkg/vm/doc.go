// Package vm runs a runAsRoot script in a qemu VM over an image's layers and
// turns what it changed into one more described layer.
package vm
