package tarstream

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nixoci/nixoci/pkg/descriptor"
)

// rules are one input path's compiled Rewrite, Ignore and Perms.
type rules struct {
	index   int
	root    string
	rewrite *regexp.Regexp
	repl    string
	ignore  *regexp.Regexp
	perms   []perm
}

type perm struct {
	re           *regexp.Regexp
	mode, orMode int64 // -1 when unset
	uid, gid     *int
	uname, gname *string
}

// compileAll compiles the rules of every input path, in order.
func compileAll(paths []descriptor.Path) ([]*rules, error) {
	rs := make([]*rules, len(paths))
	for i, p := range paths {
		r, err := compile(i, p)
		if err != nil {
			return nil, err
		}
		rs[i] = r
	}
	return rs, nil
}

func compile(index int, p descriptor.Path) (*rules, error) {
	if p.Path == "" || !filepath.IsAbs(p.Path) {
		return nil, fmt.Errorf("store path %q: must be an absolute path: %w", p.Path, ErrBadRule)
	}
	r := &rules{index: index, root: filepath.Clean(p.Path)}
	if rw := p.Rewrite; rw != nil {
		re, err := regexp.Compile(rw.Regex)
		if err != nil {
			return nil, fmt.Errorf("store path %s: rewrite regex %q: %w: fix the regular expression (Go RE2 syntax): %w", r.root, rw.Regex, ErrBadRule, err)
		}
		r.rewrite, r.repl = re, rw.Repl
	}
	if p.Ignore != "" {
		re, err := regexp.Compile(p.Ignore)
		if err != nil {
			return nil, fmt.Errorf("store path %s: ignore regex %q: %w: fix the regular expression (Go RE2 syntax): %w", r.root, p.Ignore, ErrBadRule, err)
		}
		r.ignore = re
	}
	for _, dp := range p.Perms {
		re, err := regexp.Compile(dp.Regex)
		if err != nil {
			return nil, fmt.Errorf("store path %s: perms regex %q: %w: fix the regular expression (Go RE2 syntax): %w", r.root, dp.Regex, ErrBadRule, err)
		}
		pm := perm{re: re, mode: -1, orMode: -1, uid: dp.UID, gid: dp.GID, uname: dp.Uname, gname: dp.Gname}
		if dp.Mode != "" {
			if pm.mode, err = parseMode(dp.Mode); err != nil {
				return nil, fmt.Errorf("store path %s: perms mode %q for regex %q: %w", r.root, dp.Mode, dp.Regex, err)
			}
		}
		if dp.OrMode != "" {
			if pm.orMode, err = parseMode(dp.OrMode); err != nil {
				return nil, fmt.Errorf("store path %s: perms orMode %q for regex %q: %w", r.root, dp.OrMode, dp.Regex, err)
			}
		}
		for _, id := range []*int{dp.UID, dp.GID} {
			if id != nil && *id < 0 {
				return nil, fmt.Errorf("store path %s: perms for regex %q: negative uid or gid %d: %w", r.root, dp.Regex, *id, ErrBadRule)
			}
		}
		r.perms = append(r.perms, pm)
	}
	return r, nil
}

func parseMode(s string) (int64, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("%w: want an octal mode between 0000 and 7777, like 0755", ErrBadRule)
	}
	return int64(m), nil
}

// imagePath returns src's path in the image, relative to the root and
// without a leading or trailing slash ("" is the root itself).
func (r *rules) imagePath(src string) (string, error) {
	p := src
	if r.rewrite != nil {
		if loc := r.rewrite.FindStringSubmatchIndex(src); loc != nil {
			repl := r.rewrite.ExpandString(nil, r.repl, src, loc)
			p = src[:loc[0]] + string(repl) + src[loc[1]:]
		}
	}
	name, err := normalise(p)
	var bad *badNameError
	switch {
	case errors.As(err, &bad):
		return "", fmt.Errorf("store path %s: %s: removing the case-hack suffix from %q leaves %q, which is not a file name: %w: rename the file in the store path", r.root, src, bad.part, bad.stripped, ErrBadName)
	case err != nil && r.rewrite != nil && p != src:
		return "", fmt.Errorf("store path %s: rewrite %q turns %s into %q, outside the image root: %w: change the rewrite so every result stays under /", r.root, r.rewrite.String(), src, p, ErrEscapesRoot)
	case err != nil:
		return "", fmt.Errorf("store path %s: %s is outside the image root: %w", r.root, src, ErrEscapesRoot)
	}
	return name, nil
}

// badNameError is normalise's error for a component that the case-hack
// suffix removal turns into "", "." or "..".
type badNameError struct{ part, stripped string }

func (e *badNameError) Error() string {
	return fmt.Sprintf("removing the case-hack suffix from %q leaves %q", e.part, e.stripped)
}

// normalise turns a (rewritten) source path into an image path: every
// component loses its case-hack suffix first, then the path is made
// relative and cleaned. The result never names "..", "." or an empty
// component, and never leaves the root; "" is the root itself. A suffix
// whose removal leaves "", "." or ".." is a *badNameError, a path that
// cleans to outside the root is ErrEscapesRoot.
//
// For every path whose components keep a name after the suffix removal,
// the result is the one of cleaning first and stripping afterwards, as
// earlier versions did, so layer digests do not change.
func normalise(p string) (string, error) {
	if strings.Contains(p, caseHack) {
		parts := strings.Split(p, "/")
		for i, part := range parts {
			s, ok := stripCaseHack(part)
			if !ok {
				continue
			}
			if s == "" || s == "." || s == ".." {
				return "", &badNameError{part: part, stripped: s}
			}
			parts[i] = s
		}
		p = strings.Join(parts, "/")
	}
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return "", nil
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", ErrEscapesRoot
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// caseHack is the suffix Nix on macOS appends to names that differ only in case.
const caseHack = "~nix~case~hack~"

// stripCaseHack removes a "~nix~case~hack~N" suffix (N decimal digits)
// from one path component; ok says whether there was one.
func stripCaseHack(part string) (string, bool) {
	j := strings.LastIndex(part, caseHack)
	if j < 0 {
		return part, false
	}
	n := part[j+len(caseHack):]
	if n == "" || strings.Trim(n, "0123456789") != "" {
		return part, false
	}
	return part[:j], true
}

// applyPerms applies every matching perm, in order, to e.
func (r *rules) applyPerms(e *entry) {
	for i := range r.perms {
		pm := &r.perms[i]
		if !pm.re.MatchString(e.src) {
			continue
		}
		if pm.mode >= 0 {
			e.mode = pm.mode
		}
		if pm.orMode >= 0 {
			e.mode |= pm.orMode
		}
		if pm.uid != nil {
			e.uid = *pm.uid
			if pm.uname == nil {
				// A name would win over the number in most extractors.
				e.uname = ""
			}
		}
		if pm.gid != nil {
			e.gid = *pm.gid
			if pm.gname == nil {
				e.gname = ""
			}
		}
		if pm.uname != nil {
			e.uname = *pm.uname
		}
		if pm.gname != nil {
			e.gname = *pm.gname
		}
	}
}
