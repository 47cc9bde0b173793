// Package wire defines the layout of the raw disks that carry a runAsRoot
// job into the VM and its result back out, shared by pkg/vm and pkg/guest.
package wire
