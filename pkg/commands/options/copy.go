package options

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/term"

	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"

	// The nix: transport, so that nix:IMAGE.json references parse.
	_ "github.com/nixoci/nixoci/transport"
)

// CopyOptions are the flags and arguments of `nixoci copy`; flag names and
// meanings follow skopeo copy.
type CopyOptions struct {
	// Src and Dest are image references: TRANSPORT:DETAILS (nix:IMAGE.json,
	// docker://HOST/NAME:TAG, docker-daemon:NAME:TAG, …).
	Src, Dest string
	// SrcTLSVerify and DestTLSVerify require HTTPS and verified certificates
	// when set; they apply only when SrcTLSVerifySet/DestTLSVerifySet say
	// the flag was given (otherwise registries.conf decides).
	SrcTLSVerify, DestTLSVerify       bool
	SrcTLSVerifySet, DestTLSVerifySet bool
	// SrcCreds and DestCreds are USERNAME[:PASSWORD] for the registries.
	SrcCreds, DestCreds string
	// Authfile is a containers-auth.json file with registry credentials.
	Authfile string
	// DestCompressFormat compresses layers for the destination: gzip, zstd
	// or zstd:chunked.
	DestCompressFormat string
	// ImageParallelCopies is how many layers are copied at once (0: default).
	ImageParallelCopies uint
	// AdditionalTags are extra NAME:TAG names (docker-archive destinations).
	AdditionalTags cli.StringSlice
	// Policy is a signature policy file; without it any image is accepted.
	Policy string

	// Progress receives the copy report (the command's standard output).
	Progress io.Writer
	// TTY is set when Progress is a terminal: progress bars instead of one
	// line per blob.
	TTY bool
	// Debug also reports containers/image's own steps (the global --debug).
	Debug bool
}

// DestCompressFormats are the values --dest-compress-format accepts.
var DestCompressFormats = []string{"gzip", "zstd", "zstd:chunked"}

// Flags returns the flags of `nixoci copy`, filling o.
func (o *CopyOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "src-tls-verify", Usage: "require HTTPS and verify certificates when reading from a registry or daemon", Value: true, Destination: &o.SrcTLSVerify},
		&cli.BoolFlag{Name: "dest-tls-verify", Usage: "require HTTPS and verify certificates when writing to a registry or daemon", Value: true, Destination: &o.DestTLSVerify},
		&cli.StringFlag{Name: "src-creds", Usage: "use `USERNAME[:PASSWORD]` for the source registry", Destination: &o.SrcCreds},
		&cli.StringFlag{Name: "dest-creds", Usage: "use `USERNAME[:PASSWORD]` for the destination registry", Destination: &o.DestCreds},
		&cli.StringFlag{Name: "authfile", Usage: "read registry credentials from `FILE` (containers-auth.json; default: the usual auth files)", EnvVars: []string{"REGISTRY_AUTH_FILE"}, Destination: &o.Authfile},
		&cli.StringFlag{Name: "dest-compress-format", Usage: "compress layers for the destination with `FORMAT`: gzip, zstd or zstd:chunked", Destination: &o.DestCompressFormat},
		&cli.UintFlag{Name: "image-parallel-copies", Usage: "copy at most `N` layers at once", DefaultText: "containers/image's default", Destination: &o.ImageParallelCopies},
		&cli.StringSliceFlag{Name: "additional-tag", Usage: "also name the image `NAME:TAG` (docker-archive destinations; repeatable)", Destination: &o.AdditionalTags},
		&cli.StringFlag{Name: "policy", Usage: "check signatures with policy `FILE` (default: accept any image)", Destination: &o.Policy},
	}
}

// Complete takes SRC and DEST and notes which TLS flags were given.
func (o *CopyOptions) Complete(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) != 2 {
		return fmt.Errorf("give exactly two images, SRC and DEST (got %d arguments)", len(args))
	}
	o.Src, o.Dest = args[0], args[1]
	o.SrcTLSVerifySet = c.IsSet("src-tls-verify")
	o.DestTLSVerifySet = c.IsSet("dest-tls-verify")
	o.Progress = c.App.Writer
	if o.Progress == nil {
		o.Progress = os.Stdout
	}
	f, ok := o.Progress.(*os.File)
	o.TTY = ok && term.IsTerminal(int(f.Fd()))
	o.Debug = c.Bool("debug")
	return nil
}

// Validate checks both references and the flag values.
func (o *CopyOptions) Validate() error {
	for _, r := range [][2]string{{"source", o.Src}, {"destination", o.Dest}} {
		if err := checkReference(r[0], r[1]); err != nil {
			return err
		}
	}
	if o.DestCompressFormat != "" {
		if err := checkOneOf("--dest-compress-format", o.DestCompressFormat, DestCompressFormats); err != nil {
			return err
		}
	}
	for _, cr := range [][2]string{{"--src-creds", o.SrcCreds}, {"--dest-creds", o.DestCreds}} {
		if cr[1] != "" && strings.HasPrefix(cr[1], ":") {
			return fmt.Errorf("%s: missing user name: give USERNAME[:PASSWORD]", cr[0])
		}
	}
	if err := checkFile("--authfile", o.Authfile); err != nil {
		return err
	}
	if err := checkFile("--policy", o.Policy); err != nil {
		return err
	}
	for _, t := range o.AdditionalTags.Value() {
		if t == "" {
			return errors.New("--additional-tag: empty tag: give NAME:TAG")
		}
	}
	return nil
}

// checkReference parses a TRANSPORT:DETAILS image reference.
func checkReference(what, ref string) error {
	if _, err := alltransports.ParseImageName(ref); err != nil {
		i := strings.Index(ref, ":")
		if i > 0 && transports.Get(ref[:i]) == nil {
			return fmt.Errorf("%s %q: unknown transport %q: use one of %s", what, ref, ref[:i], knownTransports())
		}
		return fmt.Errorf("%s %q: %w", what, ref, err)
	}
	return nil
}

// knownTransports lists the registered transport names, sorted.
func knownTransports() string {
	names := transports.ListNames()
	sort.Strings(names)
	return strings.Join(names, ", ")
}
