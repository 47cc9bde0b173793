package commands

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/publish"
)

func TestWithFlagHint(t *testing.T) {
	cause := errors.New("cause")
	for _, tc := range []struct {
		name string
		err  error
		want string // "" keeps the error as it is
	}{
		{"destination credentials", &publish.RegistryError{Side: publish.Destination, Ref: "docker://r/a:b", Registry: "r", Kind: publish.ErrUnauthorized, Err: cause}, "--dest-creds USER[:PASSWORD] or an --authfile entry for r"},
		{"source credentials", &publish.RegistryError{Side: publish.Source, Ref: "docker://r/a:b", Registry: "r", Kind: publish.ErrUnauthorized, Err: cause}, "--src-creds"},
		{"tls", &publish.RegistryError{Side: publish.Destination, Ref: "docker://r/a:b", Registry: "r", Kind: publish.ErrTLS, Err: cause}, "--dest-tls-verify=false"},
		{"unreachable", &publish.RegistryError{Side: publish.Destination, Ref: "docker://r/a:b", Registry: "r", Kind: publish.ErrUnreachable, Err: cause}, ""},
		{"other", cause, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withFlagHint(tc.err)
			if tc.want == "" {
				if got != tc.err {
					t.Errorf("withFlagHint(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !errors.Is(got, tc.err) || !strings.Contains(got.Error(), tc.want) {
				t.Errorf("withFlagHint(%v) = %v, want it wrapped with %q", tc.err, got, tc.want)
			}
		})
	}
}
