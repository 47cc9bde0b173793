// Package commands provides the nixoci command line: one file per subcommand,
// each only turning flags into library options and calling a package.
package commands
