package commands

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/commands/options"
	"github.com/nixoci/nixoci/pkg/publish"
)

// addCopy registers `nixoci copy`.
func addCopy(app *cli.App) {
	var o options.CopyOptions
	app.Commands = append(app.Commands, &cli.Command{
		Name:      "copy",
		Usage:     "copy an image between any two containers/image references, nix:IMAGE.json included",
		ArgsUsage: "SRC DEST",
		Description: `Copies SRC to DEST like ` + "`skopeo copy`" + `, with the same flag names. A nix:IMAGE.json
source streams each layer from the Nix store only when the destination asks for
it, so layers the destination already holds are never read. Destinations:
docker://HOST/NAME:TAG, docker-daemon:NAME:TAG, containers-storage:NAME:TAG,
oci:DIR:TAG, oci-archive:FILE:TAG, docker-archive:FILE:NAME:TAG, dir:DIR.

Before any blob moves, the destination is asked whether it holds the manifest
of a nix: source already (a registry: two small requests); if so only the tag is
written. A nix: source arrives with exactly the manifest ` + "`nixoci inspect`" + ` shows
(unless --dest-compress-format asks to recompress). A nix:INDEX.json (` + "`nixoci index`" + `)
goes whole to registries, oci:, oci-archive: and dir:; the other destinations
get the image of this machine's platform. --mount-from REPO mounts layers from
another repository of the same registry instead of uploading them (nix: sources).

On a terminal progress bars are drawn; otherwise one line per blob is printed,
"skipped: already exists" for blobs the destination has. A copy that fails in a
way a new attempt can mend is retried (--retry-times), and one that stalls ends
(--stall-timeout); no manifest is written when one of its blobs failed.

Examples:
   nixoci copy nix:./result docker://registry.example.com/app:v1
   nixoci copy --dest-tls-verify=false nix:image.json docker://127.0.0.1:5000/app:v1
   nixoci copy nix:image.json docker-daemon:app:v1
   nixoci copy --mount-from team/base nix:./result docker://registry.example.com/team/app:v1
   sudo nixoci copy nix:image.json containers-storage:localhost/app:v1`,
		Flags:  o.Flags(),
		Before: options.Before(&o),
		Action: func(c *cli.Context) error {
			srcCreds, destCreds, err := o.Credentials()
			if err != nil {
				return err
			}
			err = publish.Copy(c.Context, o.Src, o.Dest, publish.Options{
				SrcTLSVerify:        optionalBool(o.SrcTLSVerify, o.SrcTLSVerifySet),
				DestTLSVerify:       optionalBool(o.DestTLSVerify, o.DestTLSVerifySet),
				SrcCreds:            srcCreds,
				DestCreds:           destCreds,
				AuthFile:            o.Authfile,
				DestCompressFormat:  o.DestCompressFormat,
				ImageParallelCopies: o.ImageParallelCopies,
				AdditionalTags:      o.AdditionalTags.Value(),
				PolicyPath:          o.Policy,
				Progress:            o.Progress,
				TTY:                 o.TTY,
				Debug:               o.Debug,
				RetryTimes:          &o.RetryTimes,
				RetryDelay:          o.RetryDelay,
				StallTimeout:        &o.StallTimeout,
				MountFrom:           o.MountFrom.Value(),
				Log:                 logrus.StandardLogger(),
			})
			return withFlagHint(err)
		},
	})
}

// optionalBool is v when the flag was given, else nil (the default applies).
func optionalBool(v, set bool) *bool {
	if !set {
		return nil
	}
	return &v
}

// withFlagHint adds to a registry failure the flags of its side that fix
// it: pkg/publish says what is wrong, only the CLI knows its flags.
func withFlagHint(err error) error {
	var re *publish.RegistryError
	if !errors.As(err, &re) {
		return err
	}
	side := "dest"
	if re.Side == publish.Source {
		side = "src"
	}
	switch {
	case errors.Is(re.Kind, publish.ErrUnauthorized):
		return fmt.Errorf("%w (give --%s-creds USER[:PASSWORD] or an --authfile entry for %s)", err, side, re.Registry)
	case errors.Is(re.Kind, publish.ErrTLS):
		return fmt.Errorf("%w (pass --%s-tls-verify=false for a registry without valid TLS)", err, side)
	}
	return err
}
