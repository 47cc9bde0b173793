package nixdb

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixoci/nixoci/internal/logs"
	"github.com/nixoci/nixoci/pkg/closure"
)

func TestRegistrations(t *testing.T) {
	g := &closure.Graph{Name: "g", HasReferences: true, Nodes: map[string]*closure.Node{
		"/nix/store/a-app":  {Path: "/nix/store/a-app", NarHash: "sha256:aa", NarSize: 10, References: []string{"/nix/store/b-lib", "/nix/store/c-gone"}},
		"/nix/store/b-lib":  {Path: "/nix/store/b-lib", NarHash: "sha256:bb", NarSize: 20},
		"/nix/store/c-gone": {Path: "/nix/store/c-gone", NarHash: "sha256:cc", NarSize: 30},
	}}
	tests := []struct {
		name    string
		paths   []string
		want    []closure.Node
		wantErr string
	}{
		{
			name:  "references outside the image are dropped",
			paths: []string{"/nix/store/b-lib", "/nix/store/a-app"},
			want: []closure.Node{
				{Path: "/nix/store/a-app", NarHash: "sha256:aa", NarSize: 10, References: []string{"/nix/store/b-lib"}},
				{Path: "/nix/store/b-lib", NarHash: "sha256:bb", NarSize: 20},
			},
		},
		{name: "unknown path", paths: []string{"/nix/store/d-other"}, wantErr: "/nix/store/d-other is in the image but not in the reference graph"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := registrations(g, tc.paths, logs.Discard())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("registrations() = %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("registrations() mismatch (-want +got):\n%s", diff)
			}
			if roots := gcRoots(got); !cmp.Equal(roots, []string{"/nix/store/a-app"}) {
				t.Errorf("gcRoots() = %v, want only the path nothing refers to", roots)
			}
		})
	}
}

func TestLoadDBInput(t *testing.T) {
	got := string(loadDBInput([]closure.Node{
		{Path: "/nix/store/a-app", NarHash: "sha256:aa", NarSize: 10, References: []string{"/nix/store/b-lib"}},
		{Path: "/nix/store/b-lib", NarHash: "sha256:bb", NarSize: 20},
	}))
	// nix-store --dump-db's format: path, hash, size, deriver, count, references.
	want := "/nix/store/a-app\nsha256:aa\n10\n\n1\n/nix/store/b-lib\n" +
		"/nix/store/b-lib\nsha256:bb\n20\n\n0\n"
	if got != want {
		t.Errorf("loadDBInput() = %q, want %q", got, want)
	}
}
