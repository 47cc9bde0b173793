// Package flatten writes the file system an image's layers make, applied in
// order, as one tar with whiteouts applied and none of them left (what
// `docker import` takes, and what dockerTools.exportImage makes without a VM).
package flatten
