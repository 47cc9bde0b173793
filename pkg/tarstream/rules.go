package tarstream

import (
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
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return "", nil
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("store path %s: rewrite %q turns %s into %q, outside the image root: %w: change the rewrite so every result stays under /", r.root, r.rewrite.String(), src, p, ErrEscapesRoot)
	}
	if c == "." {
		return "", nil
	}
	return stripCaseHack(c), nil
}

// caseHack is the suffix Nix on macOS appends to names that differ only in case.
const caseHack = "~nix~case~hack~"

// stripCaseHack removes a "~nix~case~hack~N" suffix from every component.
func stripCaseHack(p string) string {
	if !strings.Contains(p, caseHack) {
		return p
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		j := strings.LastIndex(part, caseHack)
		if j < 0 {
			continue
		}
		n := part[j+len(caseHack):]
		if n != "" && strings.Trim(n, "0123456789") == "" {
			parts[i] = part[:j]
		}
	}
	return strings.Join(parts, "/")
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
