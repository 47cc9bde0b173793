// Package options provides the flag structs of the nixoci subcommands, each
// with the urfave/cli flags that fill it and a Validate that checks it.
package options
