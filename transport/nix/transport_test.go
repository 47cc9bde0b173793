package nix

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestTransportName(t *testing.T) {
	if got := Transport.Name(); got != "nix" {
		t.Errorf("Transport.Name() = %q, want nix", got)
	}
}

func TestValidatePolicyConfigurationScope(t *testing.T) {
	for _, tc := range []struct {
		scope string
		ok    bool
	}{
		{"/nix/store/abc-image.json", true},
		{"/nix/store", true},
		{"/", false},
		{"relative/path", false},
		{"/nix//store", false},
		{"/nix/store/", false},
		{"/nix/./store", false},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			err := Transport.ValidatePolicyConfigurationScope(tc.scope)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidatePolicyConfigurationScope(%q) = %v, want ok=%v", tc.scope, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidReference) {
				t.Errorf("ValidatePolicyConfigurationScope(%q) = %v, want ErrInvalidReference", tc.scope, err)
			}
		})
	}
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in           string
		path         string
		uncompressed bool
		str          string // StringWithinTransport
	}{
		{in: "/nix/store/abc-image.json", path: "/nix/store/abc-image.json", str: "/nix/store/abc-image.json"},
		{in: "./result", path: "./result", str: "./result"},
		{in: "/x/image.json:uncompressed", path: "/x/image.json", uncompressed: true, str: "/x/image.json:uncompressed"},
		{in: "/x/image.json:", path: "/x/image.json", str: "/x/image.json"},
		{in: "/x/a:b:", path: "/x/a:b", str: "/x/a:b:"},
		{in: "/x/a:b:uncompressed", path: "/x/a:b", uncompressed: true, str: "/x/a:b:uncompressed"},
		{in: "/x/image.json:uncompressed,uncompressed", path: "/x/image.json", uncompressed: true, str: "/x/image.json:uncompressed"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ref, err := Transport.ParseReference(tc.in)
			if err != nil {
				t.Fatalf("ParseReference(%q) = %v", tc.in, err)
			}
			r := ref.(nixReference)
			if r.path != tc.path || r.opts.uncompressed != tc.uncompressed {
				t.Errorf("ParseReference(%q) = path %q uncompressed %v, want %q %v", tc.in, r.path, r.opts.uncompressed, tc.path, tc.uncompressed)
			}
			if got := ref.StringWithinTransport(); got != tc.str {
				t.Errorf("StringWithinTransport() = %q, want %q", got, tc.str)
			}
			again, err := ParseReference(ref.StringWithinTransport())
			if err != nil {
				t.Fatalf("ParseReference(%q) = %v", ref.StringWithinTransport(), err)
			}
			if diff := cmp.Diff(ref, again, cmp.AllowUnexported(nixReference{}, nixOptions{}), cmpopts.IgnoreFields(nixOptions{}, "log")); diff != "" {
				t.Errorf("round trip differs (-first +second):\n%s", diff)
			}
			if ref.Transport() != Transport {
				t.Errorf("Transport() = %v, want Transport", ref.Transport())
			}
			if ref.DockerReference() != nil {
				t.Errorf("DockerReference() = %v, want nil", ref.DockerReference())
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	for _, in := range []string{"", ":", ":uncompressed", "/x/image.json:compressed", "/x/a:b", "/x:uncompressed,gzip"} {
		t.Run(in, func(t *testing.T) {
			if ref, err := ParseReference(in); !errors.Is(err, ErrInvalidReference) {
				t.Errorf("ParseReference(%q) = %v, %v; want ErrInvalidReference", in, ref, err)
			}
		})
	}
}

func TestReferenceOptions(t *testing.T) {
	ref, err := ParseReference("/x/image.json", Uncompressed())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ref.StringWithinTransport(), "/x/image.json:uncompressed"; got != want {
		t.Errorf("ParseReference(..., Uncompressed()).StringWithinTransport() = %q, want %q", got, want)
	}
	plain, err := NewReference("/x/image.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := plain.(nixReference).opts; got.uncompressed != defaultOptions().uncompressed || got.log == nil {
		t.Errorf("NewReference() options = %+v, want defaults %+v", got, defaultOptions())
	}
	// The options do not change which image the policy sees.
	if ref.PolicyConfigurationIdentity() != plain.PolicyConfigurationIdentity() {
		t.Errorf("PolicyConfigurationIdentity differs with options: %q vs %q", ref.PolicyConfigurationIdentity(), plain.PolicyConfigurationIdentity())
	}
}

func TestPolicyConfiguration(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store", "abc-image")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "result")
	if err := os.Symlink(store, link); err != nil {
		t.Fatal(err)
	}
	resolvedStore, err := filepath.EvalSymlinks(store)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := NewReference(link)
	if err != nil {
		t.Fatal(err)
	}
	if got := ref.PolicyConfigurationIdentity(); got != resolvedStore {
		t.Errorf("PolicyConfigurationIdentity() = %q, want %q", got, resolvedStore)
	}
	ns := ref.PolicyConfigurationNamespaces()
	if len(ns) == 0 || ns[0] != filepath.Dir(resolvedStore) {
		t.Fatalf("PolicyConfigurationNamespaces() = %v, want it to start with %q", ns, filepath.Dir(resolvedStore))
	}
	for i, n := range ns {
		if err := Transport.ValidatePolicyConfigurationScope(n); err != nil {
			t.Errorf("namespace %q is not a valid scope: %v", n, err)
		}
		if i > 0 && filepath.Dir(ns[i-1]) != n {
			t.Errorf("namespace %q does not follow %q", n, ns[i-1])
		}
	}
	if last := ns[len(ns)-1]; filepath.Dir(last) != "/" {
		t.Errorf("last namespace %q is not just below /", last)
	}
	if err := Transport.ValidatePolicyConfigurationScope(ref.PolicyConfigurationIdentity()); err != nil {
		t.Errorf("identity is not a valid scope: %v", err)
	}

	// A path that does not exist yet still makes a reference.
	missing, err := NewReference("/nonexistent-nixoci/dir/image.json")
	if err != nil {
		t.Fatalf("NewReference(missing) = %v", err)
	}
	if got := missing.PolicyConfigurationIdentity(); got != "/nonexistent-nixoci/dir/image.json" {
		t.Errorf("PolicyConfigurationIdentity() = %q", got)
	}
}

func TestSourceOnly(t *testing.T) {
	ref, err := NewReference("/x/image.json")
	if err != nil {
		t.Fatal(err)
	}
	if dest, err := ref.NewImageDestination(context.Background(), nil); !errors.Is(err, ErrSourceOnly) || dest != nil {
		t.Errorf("NewImageDestination() = %v, %v; want ErrSourceOnly", dest, err)
	}
	if err := ref.DeleteImage(context.Background(), nil); !errors.Is(err, ErrSourceOnly) {
		t.Errorf("DeleteImage() = %v, want ErrSourceOnly", err)
	}
}
