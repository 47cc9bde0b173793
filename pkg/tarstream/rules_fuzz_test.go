package tarstream

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// cleanThenStrip is how image paths were computed before normalise: clean
// and check first, strip the case-hack suffixes afterwards. normalise must
// agree with it wherever it accepts a path, or layer digests would change.
func cleanThenStrip(p string) (string, bool) {
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return "", true
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	if c == "." {
		return "", true
	}
	parts := strings.Split(c, "/")
	for i, part := range parts {
		parts[i], _ = stripCaseHack(part)
	}
	return strings.Join(parts, "/"), true
}

// FuzzNormalise checks the image-path normaliser: an accepted path never
// escapes the root or names "..", "." or an empty component, and it is
// the name earlier versions gave it.
func FuzzNormalise(f *testing.F) {
	for _, s := range []string{
		"/nix/store/aaa-x/bin/sh",
		"/nix/store/aaa-x/include/Foo.h~nix~case~hack~1",
		"/nix/store/aaa-x/..~nix~case~hack~1/..~nix~case~hack~1/..~nix~case~hack~1/etc/passwd",
		"/..~nix~case~hack~1/tmp/escaped",
		"/nix/store/aaa-x/~nix~case~hack~1",
		"/nix/store/aaa-x/.~nix~case~hack~2/x",
		"//bin/sh",
		"a/../../b",
		"/",
		"",
		"x~nix~case~hack~1/../y",
		"...~nix~case~hack~3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := normalise(p)
		var bad *badNameError
		switch {
		case errors.As(err, &bad):
			if s, ok := stripCaseHack(bad.part); !ok || s != bad.stripped || (s != "" && s != "." && s != "..") {
				t.Fatalf("normalise(%q) = %v: not a name the suffix removal empties", p, err)
			}
			return
		case err != nil:
			if !errors.Is(err, ErrEscapesRoot) {
				t.Fatalf("normalise(%q) = %v, want ErrEscapesRoot or a bad name", p, err)
			}
			return
		}
		if got == "" {
			if old, ok := cleanThenStrip(p); !ok || old != "" {
				t.Fatalf("normalise(%q) = the root, clean-then-strip gave %q, %v", p, old, ok)
			}
			return
		}
		if strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") {
			t.Fatalf("normalise(%q) = %q: not relative without a trailing slash", p, got)
		}
		for _, c := range strings.Split(got, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("normalise(%q) = %q: has the component %q", p, got, c)
			}
		}
		if old, ok := cleanThenStrip(p); !ok || old != got {
			t.Fatalf("normalise(%q) = %q, but clean-then-strip gave %q, %v: digests would change", p, got, old, ok)
		}
	})
}
