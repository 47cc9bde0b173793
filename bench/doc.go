// Package bench provides a generator of store-path-like closures and the
// benchmarks that run the nixoci binary on them against sha256sum.
package bench
