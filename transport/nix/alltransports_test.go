package nix_test

import (
	"testing"

	"go.podman.io/image/v5/transports/alltransports"

	_ "github.com/nixoci/nixoci/transport/nix"
)

// A program that only imports the package can name nix: images.
func TestAllTransports(t *testing.T) {
	for _, tc := range []struct{ in, within string }{
		{"nix:/some/path", "/some/path"},
		{"nix:./result:uncompressed", "./result:uncompressed"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ref, err := alltransports.ParseImageName(tc.in)
			if err != nil {
				t.Fatalf("ParseImageName(%q) = %v", tc.in, err)
			}
			if ref.Transport().Name() != "nix" || ref.StringWithinTransport() != tc.within {
				t.Errorf("ParseImageName(%q) = %s:%s", tc.in, ref.Transport().Name(), ref.StringWithinTransport())
			}
			if got := alltransports.TransportFromImageName(tc.in); got == nil || got.Name() != "nix" {
				t.Errorf("TransportFromImageName(%q) = %v", tc.in, got)
			}
		})
	}
}
