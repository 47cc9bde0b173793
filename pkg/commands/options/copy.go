package options

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"

	"github.com/nixoci/nixoci/pkg/publish"
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
	// RetryTimes is how many times a copy that failed in a way a new
	// attempt can mend is retried; RetryDelay the wait before each retry
	// (0: 1s, doubling). Both mean what skopeo's flags of the same name do.
	RetryTimes int
	RetryDelay time.Duration
	// StallTimeout ends a copy attempt that for this long finishes no blob
	// and moves less than publish.StallRate bytes a second (0: never).
	StallTimeout time.Duration
	// MountFrom are repositories of the destination registry (REPO or
	// HOST/REPO) to mount layers from instead of uploading them.
	MountFrom cli.StringSlice

	// Progress receives the copy report (the command's standard output).
	Progress io.Writer
	// TTY is set when Progress is a terminal: progress bars instead of one
	// line per blob.
	TTY bool
	// Debug also reports containers/image's own steps (the global --debug).
	Debug bool
	// ReadPassword asks for the password of user for a side's registry
	// when --src-creds or --dest-creds gives no password; nil when
	// standard input is not a terminal to ask on.
	ReadPassword func(user string, side publish.Side) (string, error)
}

// DestCompressFormats are the values --dest-compress-format accepts.
var DestCompressFormats = []string{"gzip", "zstd", "zstd:chunked"}

// Flags returns the flags of `nixoci copy`, filling o.
func (o *CopyOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "src-tls-verify", Usage: "require HTTPS and verify certificates when reading from a registry or daemon", Value: true, Destination: &o.SrcTLSVerify},
		&cli.BoolFlag{Name: "dest-tls-verify", Usage: "require HTTPS and verify certificates when writing to a registry or daemon", Value: true, Destination: &o.DestTLSVerify},
		&cli.StringFlag{Name: "src-creds", Usage: "use `USERNAME[:PASSWORD]` for the source registry; without a password it is asked for on the terminal", Destination: &o.SrcCreds},
		&cli.StringFlag{Name: "dest-creds", Usage: "use `USERNAME[:PASSWORD]` for the destination registry; without a password it is asked for on the terminal", Destination: &o.DestCreds},
		&cli.StringFlag{Name: "authfile", Usage: "read registry credentials from `FILE` (containers-auth.json; default: the usual auth files)", EnvVars: []string{"REGISTRY_AUTH_FILE"}, Destination: &o.Authfile},
		&cli.StringFlag{Name: "dest-compress-format", Usage: "compress layers for the destination with `FORMAT`: gzip, zstd or zstd:chunked", Destination: &o.DestCompressFormat},
		&cli.UintFlag{Name: "image-parallel-copies", Usage: "copy at most `N` layers at once", DefaultText: "containers/image's default", Destination: &o.ImageParallelCopies},
		&cli.StringSliceFlag{Name: "additional-tag", Usage: "also name the image `NAME:TAG` (docker-archive destinations; repeatable)", Destination: &o.AdditionalTags},
		&cli.StringFlag{Name: "policy", Usage: "check signatures with policy `FILE` (default: accept any image)", Destination: &o.Policy},
		&cli.IntFlag{Name: "retry-times", Usage: "retry a copy from or to a registry that failed in a way a new attempt can mend (a registry answering 5xx or 429, a connection reset or cut, a stall) at most `N` times; blobs that arrived are not sent again", Value: publish.DefaultRetryTimes, Destination: &o.RetryTimes},
		&cli.DurationFlag{Name: "retry-delay", Usage: "wait `DURATION` before each retry", DefaultText: "1s, doubling at each retry", Destination: &o.RetryDelay},
		&cli.StringSliceFlag{Name: "mount-from", Usage: "before uploading a layer, mount it from repository `REPO` of the destination registry if that has it (a cross-repository blob mount; REPO or HOST/REPO; repeatable, tried in order)", Destination: &o.MountFrom},
		&cli.DurationFlag{Name: "stall-timeout", Usage: fmt.Sprintf("fail (and retry) an attempt that for `DURATION` finishes no blob and moves less than %d bytes a second; 0 never does (only copies from or to a registry)", publish.StallRate), Value: publish.DefaultStallTimeout, Destination: &o.StallTimeout},
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
	o.ReadPassword = nil
	if term.IsTerminal(int(os.Stdin.Fd())) {
		prompt := c.App.ErrWriter
		if prompt == nil {
			prompt = os.Stderr
		}
		o.ReadPassword = func(user string, side publish.Side) (string, error) {
			fmt.Fprintf(prompt, "Password for %s (%s registry): ", user, side)
			pass, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(prompt)
			return string(pass), err
		}
	}
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
		if _, _, err := parseCreds(cr[0], cr[1]); err != nil {
			return err
		}
	}
	if o.RetryTimes < 0 {
		return fmt.Errorf("--retry-times %d: give 0 or more", o.RetryTimes)
	}
	if o.RetryDelay < 0 {
		return fmt.Errorf("--retry-delay %v: give 0 (1s, doubling) or a positive duration such as 5s", o.RetryDelay)
	}
	if o.StallTimeout < 0 || (o.StallTimeout > 0 && o.StallTimeout < time.Second) {
		return fmt.Errorf("--stall-timeout %v: give 0 (never) or at least 1s, such as 2m", o.StallTimeout)
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
	if from := o.MountFrom.Value(); len(from) > 0 {
		if !strings.HasPrefix(o.Dest, "docker://") {
			return fmt.Errorf("--mount-from %s: mounts work within one registry, and the destination %s is not one (docker://HOST/NAME:TAG)", from[0], o.Dest)
		}
		for _, r := range from {
			if r == "" || strings.ContainsAny(r, "@") || strings.HasPrefix(r, "docker://") {
				return fmt.Errorf("--mount-from %q: give a repository of the destination registry, such as team/base or HOST/team/base", r)
			}
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

// parseCreds parses the USERNAME[:PASSWORD] value of flag; "" is none.
// hasPassword is false for a value without a colon, whose password is
// asked for. This is the only place credentials are parsed.
func parseCreds(flag, value string) (c *publish.Credentials, hasPassword bool, err error) {
	if value == "" {
		return nil, false, nil
	}
	user, pass, hasPassword := strings.Cut(value, ":")
	if user == "" {
		return nil, false, fmt.Errorf("%s: missing user name: give USERNAME[:PASSWORD]", flag)
	}
	return &publish.Credentials{Username: user, Password: pass}, hasPassword, nil
}

// Credentials returns the registry credentials of both sides (nil where no
// flag gives them). A flag with a user name only asks for the password on
// the terminal, as skopeo does; without one it is an error saying what to
// give instead.
func (o *CopyOptions) Credentials() (src, dest *publish.Credentials, err error) {
	get := func(flag, value string, side publish.Side) (*publish.Credentials, error) {
		c, hasPassword, err := parseCreds(flag, value)
		if err != nil || c == nil || hasPassword {
			return c, err
		}
		if o.ReadPassword == nil {
			return nil, fmt.Errorf("%s %s has no password, and standard input is not a terminal to ask for one: give %s %s:PASSWORD, or use --authfile", flag, c.Username, flag, c.Username)
		}
		if c.Password, err = o.ReadPassword(c.Username, side); err != nil {
			return nil, fmt.Errorf("%s %s: reading the password: %w", flag, c.Username, err)
		}
		return c, nil
	}
	if src, err = get("--src-creds", o.SrcCreds, publish.Source); err != nil {
		return nil, nil, err
	}
	if dest, err = get("--dest-creds", o.DestCreds, publish.Destination); err != nil {
		return nil, nil, err
	}
	return src, dest, nil
}
