package tarstream_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixoci/nixoci/pkg/descriptor"
	"github.com/nixoci/nixoci/pkg/tarstream"
)

// TestCaseHackCannotEscape covers names whose case-hack suffix hides "..",
// "." or an empty name: each is refused, naming the store path and the
// file, with and without a copy-to-root rewrite, and nothing is written.
func TestCaseHackCannotEscape(t *testing.T) {
	const dotdot = "..~nix~case~hack~1"
	for _, tc := range []struct {
		name string
		file string // relative to the store path
		bad  string // the component the error names
	}{
		{"dot-dot chain to /etc/passwd", dotdot + "/" + dotdot + "/" + dotdot + "/etc/passwd", dotdot},
		{"single dot-dot", "lib/" + dotdot + "/x", dotdot},
		{"dot", "a/.~nix~case~hack~7/b", ".~nix~case~hack~7"},
		{"empty name file", "~nix~case~hack~1", "~nix~case~hack~1"},
		{"empty name directory", "share/~nix~case~hack~23/f", "~nix~case~hack~23"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "store")
			root := mkPath(t, store, "eee-evil", file{name: "bin/ok", data: "ok"}, file{name: tc.file, data: "pwned"})
			for _, p := range []descriptor.Path{
				{Path: root},
				{Path: root, Rewrite: &descriptor.Rewrite{Regex: "^" + root, Repl: ""}},
			} {
				err := writeErr(t, []descriptor.Path{p})
				checkErr(t, err, tarstream.ErrBadName, root, tc.bad)
				if !strings.Contains(err.Error(), filepath.Join(root, strings.SplitAfter(tc.file, tc.bad)[0])) {
					t.Errorf("Write() = %v; want it to name the file %s", err, filepath.Join(root, strings.SplitAfter(tc.file, tc.bad)[0]))
				}
			}
		})
	}
}

// TestCaseHackNamesThatStay checks names that look like the attack but
// are legal: they keep their place under the store path or the root.
func TestCaseHackNamesThatStay(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	root := mkPath(t, store, "fff-odd",
		file{name: "...~nix~case~hack~1/a", data: "three dots"},
		file{name: "..b~nix~case~hack~2", data: "dot dot b"},
		file{name: "c..~nix~case~hack~3", data: "c dot dot"},
		file{name: "d/~nix~case~hack~", data: "no number: kept as is"},
		file{name: "e~nix~case~hack~1~nix~case~hack~2", data: "one suffix removed"},
	)
	want := []string{"...", ".../a", "..b", "c..", "d", "d/~nix~case~hack~", "e~nix~case~hack~1"}
	for _, tc := range []struct {
		name   string
		path   descriptor.Path
		prefix string
	}{
		{"in the store", descriptor.Path{Path: root}, rel(root) + "/"},
		{"copy to root", descriptor.Path{Path: root, Rewrite: &descriptor.Rewrite{Regex: "^" + root, Repl: ""}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, _ := write(t, []descriptor.Path{tc.path})
			got := map[string]bool{}
			for _, e := range readTar(t, stream) {
				name := strings.TrimSuffix(e.hdr.Name, "/")
				got[name] = true
				if !strings.HasPrefix(e.hdr.Name, tc.prefix) && !strings.HasPrefix(tc.prefix, e.hdr.Name) {
					t.Errorf("entry %q is outside %q", e.hdr.Name, tc.prefix)
				}
				for _, c := range strings.Split(name, "/") {
					if c == ".." || c == "." || c == "" {
						t.Errorf("entry %q has a %q component", e.hdr.Name, c)
					}
				}
			}
			for _, w := range want {
				if !got[tc.prefix+w] {
					t.Errorf("no entry %q; entries: %v", tc.prefix+w, got)
				}
			}
		})
	}
}
