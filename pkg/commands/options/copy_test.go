package options

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/nixoci/nixoci/pkg/publish"
)

func TestCopyValidateFaultFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		mutate  func(o *CopyOptions)
		wantErr string
	}{
		{"defaults", func(*CopyOptions) {}, ""},
		{"no retries", func(o *CopyOptions) { o.RetryTimes = 0 }, ""},
		{"negative retries", func(o *CopyOptions) { o.RetryTimes = -1 }, "--retry-times -1"},
		{"negative delay", func(o *CopyOptions) { o.RetryDelay = -time.Second }, "--retry-delay -1s"},
		{"stall timeout off", func(o *CopyOptions) { o.StallTimeout = 0 }, ""},
		{"stall timeout too short", func(o *CopyOptions) { o.StallTimeout = 10 * time.Millisecond }, "--stall-timeout 10ms"},
		{"user only", func(o *CopyOptions) { o.DestCreds = "alice" }, ""},
		{"empty password", func(o *CopyOptions) { o.SrcCreds = "alice:" }, ""},
		{"no user", func(o *CopyOptions) { o.SrcCreds = ":secret" }, "--src-creds: missing user name"},
		{"mount from, not a registry", func(o *CopyOptions) { o.MountFrom = *cli.NewStringSlice("team/base") }, "--mount-from team/base: mounts work within one registry"},
		{"mount from", func(o *CopyOptions) {
			o.Dest = "docker://registry.example.com/team/app:v1"
			o.MountFrom = *cli.NewStringSlice("team/base", "registry.example.com/team/other")
		}, ""},
		{"mount from a digest", func(o *CopyOptions) {
			o.Dest = "docker://registry.example.com/team/app:v1"
			o.MountFrom = *cli.NewStringSlice("team/base@sha256:" + strings.Repeat("0", 64))
		}, "give a repository of the destination registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := CopyOptions{Src: "dir:" + dir, Dest: "oci:" + filepath.Join(dir, "layout"), RetryTimes: publish.DefaultRetryTimes, StallTimeout: publish.DefaultStallTimeout}
			tc.mutate(&o)
			checkErr(t, "Validate()", o.Validate(), tc.wantErr)
		})
	}
}

func TestCredentials(t *testing.T) {
	type asked struct {
		user string
		side publish.Side
	}
	for _, tc := range []struct {
		name           string
		src, dest      string
		terminal       bool
		wantSrc, wantD *publish.Credentials
		wantAsked      []asked
		wantErr        string
	}{
		{name: "none"},
		{name: "both given", src: "bob:b:with:colons", dest: "alice:secret", wantSrc: &publish.Credentials{Username: "bob", Password: "b:with:colons"}, wantD: &publish.Credentials{Username: "alice", Password: "secret"}},
		{name: "empty password is a password", dest: "alice:", wantD: &publish.Credentials{Username: "alice"}},
		{name: "asked on a terminal", src: "bob", dest: "alice", terminal: true,
			wantSrc: &publish.Credentials{Username: "bob", Password: "typed"}, wantD: &publish.Credentials{Username: "alice", Password: "typed"},
			wantAsked: []asked{{"bob", publish.Source}, {"alice", publish.Destination}}},
		{name: "no terminal", dest: "alice", wantErr: "--dest-creds alice has no password, and standard input is not a terminal"},
		{name: "no user", src: ":x", wantErr: "--src-creds: missing user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []asked
			o := CopyOptions{SrcCreds: tc.src, DestCreds: tc.dest}
			if tc.terminal {
				o.ReadPassword = func(user string, side publish.Side) (string, error) {
					got = append(got, asked{user, side})
					return "typed", nil
				}
			}
			src, dest, err := o.Credentials()
			checkErr(t, "Credentials()", err, tc.wantErr)
			if diff := cmp.Diff(tc.wantSrc, src); diff != "" {
				t.Errorf("source credentials (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantD, dest); diff != "" {
				t.Errorf("destination credentials (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAsked, got, cmp.AllowUnexported(asked{})); diff != "" {
				t.Errorf("passwords asked (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("reading fails", func(t *testing.T) {
		o := CopyOptions{DestCreds: "alice", ReadPassword: func(string, publish.Side) (string, error) { return "", errors.New("EOF") }}
		_, _, err := o.Credentials()
		checkErr(t, "Credentials()", err, "--dest-creds alice: reading the password: EOF")
	})
}

// TestCopyFaultFlags checks the fault flags' defaults and parsing.
func TestCopyFaultFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		flags []string
		want  [3]string // retry times, retry delay, stall timeout
	}{
		{"defaults", nil, [3]string{"3", "0s", "5m0s"}},
		{"given", []string{"--retry-times", "0", "--retry-delay", "2s", "--stall-timeout", "0"}, [3]string{"0", "2s", "0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o CopyOptions
			app := &cli.App{Commands: []*cli.Command{{
				Name:   "copy",
				Flags:  o.Flags(),
				Before: Before(&o),
				Action: func(*cli.Context) error { return nil },
			}}}
			args := append(append([]string{"nixoci", "copy"}, tc.flags...), "dir:"+dir, "oci:"+dir+"/l:t")
			if err := app.Run(args); err != nil {
				t.Fatalf("Run(%v) = %v", args, err)
			}
			got := [3]string{strconv.Itoa(o.RetryTimes), o.RetryDelay.String(), o.StallTimeout.String()}
			if got != tc.want {
				t.Errorf("retry times, delay, stall timeout = %v, want %v", got, tc.want)
			}
		})
	}
}
